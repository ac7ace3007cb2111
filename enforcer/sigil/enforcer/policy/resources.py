"""The one schema of Sigil's two policy resources, shared by YAML files and the Kubernetes CRDs.

Field names follow Gateway API GEP-3779 exactly (``targetRefs``, ``action``, ``enforcementLevel``,
``rules[].sources[]``, ``rules[].networkAttributes.ports``). Extensions beyond the GEP, each marked as such in
its description: ``action: DENY`` (the GEP's planned enhancement), ``spec.dryRun``, SPIFFE sources ending
in ``/*``, the source types of :mod:`.identity_sources`, ``type: Any``, ``rules[].notSources``,
``spec.scope: Mesh`` and ``targetRefs[].ports``.

One departure from the GEP, for safety: a rule must name a criterion. The GEP reads a rule without ``sources``
as "any peer", so ``rules: [{}]`` allows (or denies) everyone. But the Kubernetes API server prunes fields its
schema does not know unless the client asked for strict field validation, so a misspelled ``sources`` would
arrive as exactly that empty rule: a typo would silently allow every peer. Here a rule must carry ``sources``
or ``networkAttributes`` (and ``networkAttributes`` its ``ports``); everyone is written ``sources: [{type: Any}]``.
A pruned field can then only make the API server (by CEL) and Sigil (by the same check in Python) refuse the
resource, never widen it. ``ClusterAuthorizationPolicy`` is the admin tier the GEP left out, modelled on the network-policy-api's
AdminNetworkPolicy and BaselineAdminNetworkPolicy. The semantics live in ``docs``: ../shared/reference/authz.md,
part 7.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from sigil.enforcer.policy.network import NETWORK_ATTRIBUTES_SCHEMA
from sigil.enforcer.policy.schema import Array, Boolean, Check, Integer, Map, Object, String
from sigil.enforcer.policy.selector import (
    LABEL_KEYS,
    LABEL_VALUES,
    SELECTOR_SCHEMA,
    selector_schema,
)

__all__ = [
    "API_VERSION",
    "CLUSTER_KIND",
    "GROUP",
    "KINDS",
    "NAMESPACED_KIND",
    "VERSION",
    "document_schema",
    "spec_schema",
]

GROUP = "authz.sigil.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
NAMESPACED_KIND = "AuthorizationPolicy"
CLUSTER_KIND = "ClusterAuthorizationPolicy"
KINDS = (NAMESPACED_KIND, CLUSTER_KIND)

# Kubernetes' own name rules (apimachinery validation.IsDNS1123Label/Subdomain; label keys and values are in selector),
# written with [.] instead of \. so that they survive being quoted inside CEL strings.
_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# A SPIFFE ID with a non-empty path (the root ID never names a workload), optionally ending in /* (Sigil's
# prefix extension); the full SPIFFE-ID rules are applied again by SpiffeId.parse.
_SPIFFE_SOURCE = r"^spiffe://[a-z0-9._-]+((/[A-Za-z0-9._-]+)+(/[*])?|/[*])$"

_NAMESPACE = String(
    "A namespace name.", pattern=_DNS_LABEL, shape="a namespace name (a DNS label)", max_length=63
)
_NAME = String(
    "A resource name.", pattern=_DNS_SUBDOMAIN, shape="a resource name (a DNS subdomain)"
)


# Each source type and the one field that describes it (None: the type needs none).
_TYPE_FIELDS: dict[str, str | None] = {
    "ServiceAccount": "serviceAccount",
    "SPIFFE": "spiffe",
    "Any": None,
    "Authenticated": "authenticated",
    "SameNamespace": None,
    "Namespaces": "namespaces",
    "SPIFFEPattern": "spiffePattern",
    "AllOf": "allOf",
}
# The type's field is required, except Authenticated's, whose absence means "of every trusted domain".
_REQUIRED_FIELDS = ("serviceAccount", "spiffe", "namespaces", "spiffePattern", "allOf")
# A glob over a whole SPIFFE ID: * is any run of characters, / included (Sigil extension).
_SPIFFE_PATTERN = r"^spiffe://[A-Za-z0-9._*/-]+$"


def _missing(kind: str, name: str, source: Mapping[str, Any]) -> str | None:
    return name if source.get("type") == kind and name not in source else None


def _misplaced(kind: str, name: str, source: Mapping[str, Any]) -> str | None:
    return name if name in source and source.get("type") != kind else None


def _field_checks(*, member: bool) -> tuple[Check, ...]:
    """A source sets its type's own field (GEP-3779's one-of) and no other type's field."""
    checks = []
    for kind, name in _TYPE_FIELDS.items():
        if name is None or (member and kind == "AllOf"):
            continue
        if name in _REQUIRED_FIELDS:
            checks.append(
                Check(
                    cel=f"self.type != '{kind}' || has(self.{name})",
                    message=f"{name} is required when type is {kind}",
                    expected=f"{name} to be set when type is {kind}",
                    failing=functools.partial(_missing, kind, name),
                )
            )
        checks.append(
            Check(
                cel=f"!has(self.{name}) || self.type == '{kind}'",
                message=f"{name} must not be set unless type is {kind}",
                expected=f"no {name} unless type is {kind}",
                failing=functools.partial(_misplaced, kind, name),
            )
        )
    return tuple(checks)


def _names_a_criterion(rule: Mapping[str, Any]) -> str | None:
    named = "sources" in rule or "notSources" in rule or "networkAttributes" in rule
    return None if named else ""


_TRUST_DOMAIN = String(
    "A trust domain name.",
    pattern=r"^[a-z0-9._-]+$",
    shape="a trust domain name (lowercase letters, digits, '.', '-', '_')",
    max_length=255,
)


def _source(*, namespaced: bool, member: bool = False, negated: bool = False) -> Object:
    """A source; a ``member`` (of an AllOf) is any kind but AllOf, which keeps the schema finite, and neither
    a member nor a ``negated`` source (of ``notSources``) may be Any."""
    account = Object(
        description="A Kubernetes ServiceAccount of the local trust domain.",
        fields={
            "namespace": _NAMESPACE,
            "name": String(
                "The account's name, or * for every account of the namespace.",
                pattern=r"^([*]|[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*)$",
                shape="a ServiceAccount name or *",
            ),
        },
        # A cluster-scoped policy has no namespace of its own to default to.
        required=("name",) if namespaced else ("namespace", "name"),
    )
    kinds = tuple(
        kind
        for kind in _TYPE_FIELDS
        if not (member and kind == "AllOf") and not ((member or negated) and kind == "Any")
    )
    fields: dict[str, Any] = {
        "type": String(
            "Sigil extensions: Any matches every peer, with or without an SVID; Authenticated any peer "
            "with a verified SVID; SameNamespace local peers of the target's namespace; Namespaces "
            "local peers of namespaces matching a selector; SPIFFEPattern peers whose SPIFFE ID "
            "matches a glob; AllOf peers matching every listed source.",
            enum=kinds,
        ),
        "spiffe": String(
            "A SPIFFE ID. Sigil extension: ending in /* matches every ID below that path.",
            pattern=_SPIFFE_SOURCE,
            shape="a SPIFFE ID with a path (spiffe://domain/path, optionally ending in /*)",
            max_length=2048,
        ),
        "serviceAccount": account,
        "authenticated": Object(
            description="Sigil extension: limits type Authenticated to these trust domains.",
            fields={"trustDomains": Array(_TRUST_DOMAIN, max_items=32, min_items=1)},
            required=("trustDomains",),
        ),
        "namespaces": Object(
            description="Sigil extension: the peers' namespaces, by their labels.",
            fields={"selector": selector_schema(max_expressions=4) if member else SELECTOR_SCHEMA},
            required=("selector",),
        ),
        "spiffePattern": String(
            "Sigil extension: a glob over the whole SPIFFE ID; * matches any run of characters, "
            "/ included; spiffe://* is any peer with an SVID.",
            pattern=_SPIFFE_PATTERN,
            shape="a SPIFFE ID pattern (spiffe://..., * matching any run of characters)",
            max_length=2048,
        ),
    }
    if not member:
        fields["allOf"] = Array(
            _source(namespaced=namespaced, member=True),
            max_items=4,
            min_items=1,
            description="Sigil extension: every one of these sources must match (at most four; a "
            "Namespaces member's selector takes at most four matchExpressions, to keep the API server's "
            "CEL cost estimate in bounds).",
        )
    return Object(
        description="A peer identity; sources are OR-ed.",
        fields=fields,
        required=("type",),
        checks=_field_checks(member=member),
    )


def _rule(*, namespaced: bool) -> Object:
    fields: dict[str, Any] = {
        "sources": Array(
            _source(namespaced=namespaced),
            max_items=128,
            description="Omitted: any peer, even without an SVID. Empty: nothing.",
        ),
        "notSources": Array(
            _source(namespaced=namespaced, negated=True),
            max_items=32,
            description="Sigil extension: the peer must match none of these sources (a peer without an "
            "SVID matches no identity source, so it is never excluded by one).",
        ),
        "networkAttributes": NETWORK_ATTRIBUTES_SCHEMA,
    }
    criterion = Check(
        cel="has(self.sources) || has(self.notSources) || has(self.networkAttributes)",
        message="a rule must name sources, notSources or networkAttributes "
        "(every peer: sources: [{type: Any}])",
        expected="sources, notSources or networkAttributes (a rule naming none would match every "
        "peer; write sources: [{type: Any}] for that)",
        failing=_names_a_criterion,
    )
    if namespaced:
        return Object(
            fields=fields, checks=(criterion,), description="Rules are OR-ed; sources AND ports."
        )
    fields = {"action": String(enum=("Allow", "Deny", "Pass")), **fields}
    return Object(
        fields=fields,
        required=("action",),
        checks=(criterion,),
        description="The first matching rule decides.",
    )


_TARGET_REF = Object(
    description="GEP-3779 target: the pods of the policy's namespace selected by labels.",
    fields={
        "group": String(enum=("", "core")),
        "kind": String(enum=("Pod",)),
        "selector": SELECTOR_SCHEMA,
        "ports": Array(
            Integer("A destination port.", 1, 65535),
            max_items=64,
            min_items=1,
            description="Sigil extension: the ref selects its pods only for connections to these ports "
            "(omitted: every port); an ALLOW policy then denies unless allowed on these ports only.",
        ),
    },
    # GEP-3779 requires group (write "" for the core group), as Gateway API's policy targetRefs do.
    required=("group", "kind", "selector"),
)

_NAMESPACED_SPEC = Object(
    description="A namespace owner's AuthorizationPolicy (GEP-3779).",
    fields={
        "targetRefs": Array(_TARGET_REF, max_items=1, min_items=1),
        "action": String("Sigil extension: DENY.", enum=("ALLOW", "DENY")),
        "enforcementLevel": String(enum=("Network",)),
        "dryRun": Boolean("Sigil extension: evaluate and report, never enforce."),
        "scope": String(
            "Sigil extension: Mesh joins the namespace tier of every namespace, its selector matched "
            "against the pods of each (Istio's root namespace); default Namespace.",
            enum=("Namespace", "Mesh"),
        ),
        "rules": Array(_rule(namespaced=True), max_items=128),
    },
    required=("targetRefs", "action", "enforcementLevel"),
)


def _pass_outside_admin(spec: Mapping[str, Any]) -> str | None:
    if spec.get("tier") == "Admin":
        return None
    for index, rule in enumerate(spec.get("rules") or []):
        if isinstance(rule, Mapping) and rule.get("action") == "Pass":
            return f"rules[{index}].action"
    return None


_CLUSTER_SPEC = Object(
    description="The cluster admin's policy, in the Admin tier (before namespaces) or Baseline (after).",
    fields={
        "tier": String(enum=("Admin", "Baseline")),
        "priority": Integer("Lower is evaluated first; ties go by name.", 0, 1000),
        "namespaceSelector": SELECTOR_SCHEMA,
        "podSelector": SELECTOR_SCHEMA,
        "dryRun": Boolean("Evaluate and report, never enforce."),
        "rules": Array(_rule(namespaced=False), max_items=128),
    },
    required=("tier", "priority", "namespaceSelector"),
    checks=(
        Check(
            cel="self.tier == 'Admin' || !has(self.rules) || self.rules.all(r, r.action != 'Pass')",
            message="Pass is allowed only in the Admin tier",
            expected="Allow or Deny (Pass is allowed only in the Admin tier)",
            failing=_pass_outside_admin,
        ),
    ),
)


def spec_schema(kind: str) -> Object:
    """The schema of ``spec`` for ``kind``."""
    return _NAMESPACED_SPEC if kind == NAMESPACED_KIND else _CLUSTER_SPEC


_FILE_METADATA = Object(
    open=True,  # kubectl get -o yaml adds uid, resourceVersion, managedFields...: harmless here
    fields={
        "name": _NAME,
        "namespace": _NAMESPACE,
        "labels": Map(keys=LABEL_KEYS, values=LABEL_VALUES),
        "annotations": Map(keys=LABEL_KEYS, values=String(max_length=262144)),
    },
    required=("name",),
)


# Built once per kind and shared (nodes are frozen): every document judged asks for it, and building it was a
# sixth of parsing a small policy.
@functools.lru_cache(maxsize=8)
def document_schema(kind: str, *, for_crd: bool = False) -> Object:
    """The whole resource: for files, or (``for_crd``) as the CRD's openAPIV3Schema.

    A CRD may not constrain ``metadata`` beyond its name (the API server owns it) and, by convention, types
    ``apiVersion`` and ``kind`` as plain strings; files have no API server, so there we check them all.
    """
    if for_crd:
        api_version, kind_node, metadata = String(), String(), Object()
    else:
        api_version, kind_node = String(enum=(API_VERSION,)), String(enum=(kind,))
        metadata = _FILE_METADATA
    return Object(
        description=spec_schema(kind).description,
        fields={
            "apiVersion": api_version,
            "kind": kind_node,
            "metadata": metadata,
            "spec": spec_schema(kind),
            "status": Object(open=True),
        },
        required=("spec",) if for_crd else ("apiVersion", "kind", "metadata", "spec"),
    )
