"""Istio's ``security.istio.io`` AuthorizationPolicy (v1 and v1beta1), read as Sigil policy at L4.

Istio decides a connection to a workload in this order (istio.io, security concepts, "Authorization policy
precedence"): a CUSTOM policy that denies; then any DENY policy with a matching rule denies; then, if no ALLOW
policy applies to the workload, allow; then allow when an ALLOW rule matches; else deny. Policies apply from
the workload's namespace and, mesh-wide, from the root namespace (``rootNamespace``, ``istio-system`` by default).

That is Sigil's namespace tier (authz.md part 7, step 2): any matching DENY rule denies; once an ALLOW policy
selects the pod, only a matching ALLOW rule allows. So each Istio policy becomes one Sigil
``AuthorizationPolicy`` of the same name and namespace (a policy with more than 128 Sigil rules is split into
``-part-N`` siblings of the same action and selection, which OR together exactly as one policy would):

* ``selector.matchLabels`` becomes a ``Pod`` target ref; no selector means every pod of the namespace.
* a policy of the root namespace gets ``scope: Mesh``, joining the namespace tier of every namespace;
* ALLOW and DENY stay; AUDIT only marks requests in Istio, so it becomes a dry-run DENY policy (it never
  changes a decision either way); CUSTOM (an external authorizer) and ``targetRefs`` (gateways and waypoints,
  not sidecars) are refused;
* ``istio.io/dry-run: "true"`` becomes ``dryRun: true``: evaluated and reported, never enforced;
* the idioms carry over: ``spec: {}`` (an ALLOW policy without rules) allows nothing, ``rules: [{}]`` allows
  (or with DENY denies) every peer, with or without an SVID.

Nothing is dropped silently: every part that is approximated (Istio's own TCP treatment of HTTP-only fields,
:mod:`.rules`) or refused is a finding naming its field. With no Admin or Baseline policies and the default
``allow``, the translated set decides every TCP connection as Istio does whenever the translation is exact.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sigil.enforcer.policy.dialects.base import (
    TRANSLATED_FROM,
    Exactness,
    Finding,
    SourcedDocument,
    Translated,
    TranslateOptions,
    Translation,
)
from sigil.enforcer.policy.dialects.istio.conditions import ConditionError
from sigil.enforcer.policy.dialects.istio.identities import TrustDomains
from sigil.enforcer.policy.dialects.istio.rules import RuleError, translate_rule

__all__ = ["DIALECT", "IstioDialect"]

_GROUP = "security.istio.io"
_VERSIONS = ("v1", "v1beta1")
_DRY_RUN = "istio.io/dry-run"
_SIGIL_API = "authz.sigil.dev/v1alpha1"
_MAX_RULES = 128  # Sigil's limit per policy (policy.resources)
_SPEC_FIELDS = ("selector", "targetRef", "targetRefs", "action", "provider", "rules")


class _RefusedError(Exception):
    """The whole policy is not translated; carries the field path and the reason."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


class IstioDialect:
    """The translator of Istio's AuthorizationPolicy; other ``security.istio.io`` kinds are reported and skipped."""

    @property
    def name(self) -> str:
        """``istio``."""
        return "istio"

    def translate(
        self, documents: Sequence[SourcedDocument], options: TranslateOptions
    ) -> Translation:
        """Each AuthorizationPolicy as one Sigil policy (or ``-part-N`` siblings), with findings."""
        domains = TrustDomains(options.trust_domain, options.trust_domain_aliases)
        translated: list[Translated] = []
        findings: list[Finding] = []
        for sourced in documents:
            label = _label(sourced.document)
            try:
                documents_out, notes = _policy(sourced.document, options, domains)
            except _RefusedError as refused:
                findings.append(
                    Finding(label, sourced.where, refused.path, Exactness.REFUSED, refused.message)
                )
                continue
            findings.extend(
                Finding(label, sourced.where, path, exactness, message)
                for path, exactness, message in notes
            )
            translated.extend(Translated(document, (label,)) for document in documents_out)
        return Translation(tuple(translated), tuple(findings))


DIALECT = IstioDialect()
"""The Istio dialect, as :func:`sigil.enforcer.policy.dialects.base.dialect_named` finds it."""


def _label(document: Mapping[str, Any]) -> str:
    kind = document.get("kind") if isinstance(document.get("kind"), str) else "object"
    metadata = document.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    return f"istio {kind} {metadata.get('namespace', '?')}/{metadata.get('name', '?')}"


Note = tuple[str, Exactness, str]


def _policy(
    document: Mapping[str, Any], options: TranslateOptions, domains: TrustDomains
) -> tuple[list[dict[str, Any]], list[Note]]:
    api_version = str(document.get("apiVersion", ""))
    group, _, version = api_version.partition("/")
    if group != _GROUP or version not in _VERSIONS:
        raise _RefusedError("apiVersion", f"{api_version!r} is not security.istio.io/v1 or v1beta1")
    if document.get("kind") != "AuthorizationPolicy":
        raise _RefusedError(
            "kind", f"{document.get('kind')!r} is not an AuthorizationPolicy: not translated"
        )
    metadata = document.get("metadata")
    if (
        not isinstance(metadata, Mapping)
        or not isinstance(metadata.get("name"), str)
        or not isinstance(metadata.get("namespace"), str)
        or not metadata["name"]
        or not metadata["namespace"]
    ):
        raise _RefusedError(
            "metadata", "metadata.name and metadata.namespace are required (strings)"
        )
    name, namespace = str(metadata["name"]), str(metadata["namespace"])
    spec = document.get("spec") or {}
    if not isinstance(spec, Mapping):
        raise _RefusedError("spec", "expected a mapping")
    unknown = sorted(set(spec) - set(_SPEC_FIELDS))
    if unknown:
        raise _RefusedError(
            f"spec.{unknown[0]}", f"unknown field (known: {', '.join(_SPEC_FIELDS)})"
        )
    if spec.get("targetRef") or spec.get("targetRefs"):
        raise _RefusedError(
            "spec.targetRefs",
            "targets a gateway, waypoint or service, which Istio enforces there, not at the pods; Sigil "
            "enforces at pods only: not translated",
        )
    action = spec.get("action", "ALLOW")
    if action == "CUSTOM":
        raise _RefusedError(
            "spec.action",
            "CUSTOM delegates to an external authorizer (a MeshConfig extension provider) that Sigil cannot "
            "consult: not translated, so whatever it would have denied is not denied",
        )
    if action not in ("ALLOW", "DENY", "AUDIT"):
        raise _RefusedError("spec.action", f"{action!r} is not ALLOW, DENY, AUDIT or CUSTOM")
    notes: list[Note] = []
    selector = _selector(spec.get("selector"))
    annotations = metadata.get("annotations")
    dry_run = (
        isinstance(annotations, Mapping) and str(annotations.get(_DRY_RUN, "")).lower() == "true"
    )
    if action == "AUDIT":
        dry_run = True
        notes.append(
            (
                "spec.action",
                Exactness.APPROXIMATE,
                "AUDIT only marks matching requests for an audit plugin; translated as a dry-run DENY "
                "policy, which never changes a decision and reports the connections it matches",
            )
        )
    rules_raw = spec.get("rules")
    if rules_raw is not None and not isinstance(rules_raw, list):
        raise _RefusedError("spec.rules", "expected a list")
    rules: list[dict[str, Any]] = []
    for index, rule in enumerate(rules_raw or []):
        path = f"spec.rules[{index}]"
        try:
            out, rule_notes = translate_rule(
                rule, path, allow=action == "ALLOW", namespace=namespace, domains=domains
            )
        except (RuleError, ConditionError) as err:
            raise _RefusedError(path, str(err)) from err
        rules.extend(r for r in out if r not in rules)
        notes.extend((n.path, n.exactness, n.message) for n in rule_notes)
    origin = f"istio AuthorizationPolicy {namespace}/{name}"
    chunks = [rules[i : i + _MAX_RULES] for i in range(0, len(rules), _MAX_RULES)] or [[]]
    out_documents = []
    for number, chunk in enumerate(chunks, start=1):
        spec_out: dict[str, Any] = {
            "targetRefs": [{"group": "", "kind": "Pod", "selector": {"matchLabels": selector}}],
            "action": "ALLOW" if action == "ALLOW" else "DENY",
            "enforcementLevel": "Network",
            "rules": chunk,
        }
        if dry_run:
            spec_out["dryRun"] = True
        if namespace == options.root_namespace:
            spec_out["scope"] = "Mesh"
        out_documents.append(
            {
                "apiVersion": _SIGIL_API,
                "kind": "AuthorizationPolicy",
                "metadata": {
                    "name": name if number == 1 else f"{name}-part-{number}",
                    "namespace": namespace,
                    "annotations": {TRANSLATED_FROM: origin},
                },
                "spec": spec_out,
            }
        )
    return out_documents, notes


def _selector(selector: object) -> dict[str, str]:
    if selector is None:
        return {}
    if not isinstance(selector, Mapping) or set(selector) - {"matchLabels"}:
        raise _RefusedError(
            "spec.selector", "expected a mapping with matchLabels only (Istio's WorkloadSelector)"
        )
    labels = selector.get("matchLabels") or {}
    if not isinstance(labels, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise _RefusedError(
            "spec.selector.matchLabels", "expected a mapping of label names to string values"
        )
    return dict(labels)
