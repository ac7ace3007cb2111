"""Linkerd's authorizations, each resolved once into the clients it admits and what it applies to.

An ``AuthorizationPolicy`` applies to one ``Server`` or to every Server of its own namespace, and admits the
clients that satisfy *all* its ``requiredAuthenticationRefs``. Linkerd allows at most one identity
authentication (a ``MeshTLSAuthentication`` or a ``ServiceAccount``) and at most one
``NetworkAuthentication`` per policy; its admission webhook refuses more, and its index ignores a policy that
has more or that names an authentication it cannot find (linkerd2 ``policy-controller/src/admission.rs`` and
``policy-controller/k8s/index/src/inbound/index.rs``, ``policy_client_authz``). A policy Linkerd ignores
authorizes nothing here either, with a finding.
The legacy ``ServerAuthorization`` is read by :mod:`._legacy`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sigil.enforcer.policy.dialects.base import Exactness, Finding, TranslateOptions
from sigil.enforcer.policy.dialects.linkerd._authn import (
    NO_CLIENT,
    Client,
    Network,
    NetworkError,
    account_source,
    identity_source,
    parse_networks,
)
from sigil.enforcer.policy.dialects.linkerd._batch import Batch, LinkerdObject
from sigil.enforcer.policy.dialects.linkerd._legacy import selects, server_authorization

__all__ = ["Authorization", "resolve_authorizations"]

_GROUP = "policy.linkerd.io"
_REF = "spec.requiredAuthenticationRefs"


@dataclass(frozen=True, slots=True)
class Authorization:
    """One authorization: its object, what it applies to, and the clients it admits (None: nobody).

    ``server`` is a Server name, ``server_labels`` a label selector over Servers (ServerAuthorization), and
    neither means every Server of the namespace.
    """

    obj: LinkerdObject
    client: Client | None
    server: str | None = None
    server_labels: Mapping[str, Any] | None = None
    authentications: tuple[LinkerdObject, ...] = ()

    def applies_to(self, server: LinkerdObject) -> bool:
        """True when this authorization authorizes traffic to ``server``."""
        if self.obj.namespace != server.namespace:
            return False
        if self.server is not None:
            return self.server == server.name
        if self.server_labels is not None:
            return selects(self.server_labels, server.labels)
        return True


def resolve_authorizations(
    batch: Batch, options: TranslateOptions, findings: list[Finding]
) -> list[Authorization]:
    """Every AuthorizationPolicy and ServerAuthorization of ``batch`` that applies to Servers."""
    resolved = []
    for obj in batch.of_kind("AuthorizationPolicy"):
        found = _policy(obj, batch, options, findings)
        if found is not None:
            resolved.append(found)
    for obj in batch.of_kind("ServerAuthorization"):
        legacy = server_authorization(obj, options, findings)
        if legacy is not None:
            client, server, labels = legacy
            resolved.append(Authorization(obj, client, server=server, server_labels=labels))
    return resolved


def _policy(
    obj: LinkerdObject, batch: Batch, options: TranslateOptions, findings: list[Finding]
) -> Authorization | None:
    target = obj.spec.get("targetRef")
    if not isinstance(target, Mapping):
        findings.append(obj.finding("spec.targetRef", Exactness.REFUSED, "missing; not translated"))
        return None
    kind, name = str(target.get("kind", "")), str(target.get("name", ""))
    if kind in ("HTTPRoute", "GRPCRoute"):
        findings.append(
            obj.finding(
                "spec.targetRef",
                Exactness.REFUSED,
                f"targets {kind} {name}: it would admit its clients to the requests that route matches (L7); "
                "Sigil decides per connection, so it is not translated and those clients are not admitted",
            )
        )
        return None
    server: str | None = None
    if kind == "Server" and target.get("group", _GROUP) == _GROUP:
        server = name
    elif kind != "Namespace" or target.get("group") not in (None, "", "core"):
        findings.append(
            obj.finding("spec.targetRef", Exactness.REFUSED, f"unsupported target kind {kind}")
        )
        return None
    elif name != obj.namespace:
        findings.append(
            obj.finding(
                "spec.targetRef.name",
                Exactness.REFUSED,
                f"targets namespace {name}, not its own; Linkerd refuses it, so it authorizes nothing",
            )
        )
        return None
    used: list[LinkerdObject] = []
    client = _required(obj, batch, options, findings, used)
    return Authorization(obj, client, server=server, authentications=tuple(used))


def _required(
    obj: LinkerdObject,
    batch: Batch,
    options: TranslateOptions,
    findings: list[Finding],
    used: list[LinkerdObject],
) -> Client | None:
    refs = obj.spec.get("requiredAuthenticationRefs") or []
    by_kind: dict[str, list[Mapping[str, Any]]] = {}
    for index, ref in enumerate(refs if isinstance(refs, list) else [None]):
        kind = ref.get("kind") if isinstance(ref, Mapping) else None
        if kind not in (
            "MeshTLSAuthentication",
            "NetworkAuthentication",
            "ServiceAccount",
        ) or not ref.get("name"):
            _nothing(
                obj,
                f"{_REF}[{index}]",
                Exactness.REFUSED,
                "not a MeshTLSAuthentication, NetworkAuthentication or ServiceAccount ref with a name; "
                "Linkerd refuses the policy, so it authorizes nothing",
                findings,
            )
            return None
        by_kind.setdefault(str(kind), []).append(ref)
    identity_refs = by_kind.get("MeshTLSAuthentication", []) + by_kind.get("ServiceAccount", [])
    if len(identity_refs) > 1 or len(by_kind.get("NetworkAuthentication", [])) > 1:
        _nothing(
            obj,
            _REF,
            Exactness.REFUSED,
            "requires more than one identity authentication (MeshTLSAuthentication or ServiceAccount) or more "
            "than one NetworkAuthentication; Linkerd's admission refuses such a policy and its index ignores it",
            findings,
        )
        return None
    sources: tuple[dict[str, Any], ...] | None = None
    networks: tuple[Network, ...] | None = None
    for ref in identity_refs:
        namespace = str(ref.get("namespace") or obj.namespace)
        if ref["kind"] == "ServiceAccount":
            account = account_source(namespace, str(ref["name"]), options)
            if not isinstance(account, dict):
                exactness = Exactness.EXACT if account is None else Exactness.REFUSED
                findings.append(obj.finding(_REF, exactness, account or NO_CLIENT))
            sources = (account,) if isinstance(account, dict) else ()
            continue
        authn = batch.get("MeshTLSAuthentication", namespace, str(ref["name"]))
        if authn is None:
            _missing(obj, "MeshTLSAuthentication", namespace, str(ref["name"]), findings)
            return None
        used.append(authn)
        sources = _mesh_tls(authn, options, findings)
        if sources is None:
            _missing(obj, "MeshTLSAuthentication", namespace, str(ref["name"]), findings)
            return None
    for ref in by_kind.get("NetworkAuthentication", []):
        namespace = str(ref.get("namespace") or obj.namespace)
        authn = batch.get("NetworkAuthentication", namespace, str(ref["name"]))
        if authn is None:
            _missing(obj, "NetworkAuthentication", namespace, str(ref["name"]), findings)
            return None
        used.append(authn)
        try:
            networks = parse_networks(authn.spec.get("networks"))
        except NetworkError as err:
            findings.append(
                authn.finding("spec.networks", Exactness.REFUSED, f"{err}; not translated")
            )
            _missing(obj, "NetworkAuthentication", namespace, str(ref["name"]), findings)
            return None
    return Client(sources, networks)


def _mesh_tls(
    authn: LinkerdObject, options: TranslateOptions, findings: list[Finding]
) -> tuple[dict[str, Any], ...] | None:
    """The sources of a MeshTLSAuthentication, or None where Linkerd refuses it."""
    sources = []
    identities = authn.spec.get("identities") or []
    refs = authn.spec.get("identityRefs") or []
    if not identities and not refs:
        findings.append(
            authn.finding("spec", Exactness.EXACT, "names no identity; Linkerd ignores it")
        )
        return None
    for index, identity in enumerate(identities):
        found = identity_source(str(identity), options)
        if isinstance(found, str):
            findings.append(authn.finding(f"spec.identities[{index}]", Exactness.REFUSED, found))
        else:
            sources.append(found)
    for index, ref in enumerate(refs):
        path = f"spec.identityRefs[{index}]"
        found_ref: dict[str, Any] | str | None
        kind = ref.get("kind") if isinstance(ref, Mapping) else None
        name = str(ref.get("name") or "") if isinstance(ref, Mapping) else ""
        if kind == "Namespace" and name:
            found_ref = identity_source(
                f"*.{name}.serviceaccount.identity.linkerd.{options.trust_domain}", options
            )
        elif kind == "ServiceAccount" and name:
            found_ref = account_source(str(ref.get("namespace") or authn.namespace), name, options)
        else:
            findings.append(
                authn.finding(
                    path,
                    Exactness.REFUSED,
                    "not a ServiceAccount or Namespace ref; Linkerd refuses it",
                )
            )
            return None
        if isinstance(found_ref, dict):
            sources.append(found_ref)
        else:
            exactness = Exactness.EXACT if found_ref is None else Exactness.REFUSED
            findings.append(authn.finding(path, exactness, found_ref or NO_CLIENT))
    return tuple(sources)


def _missing(
    obj: LinkerdObject, kind: str, namespace: str, name: str, findings: list[Finding]
) -> None:
    _nothing(
        obj,
        _REF,
        Exactness.EXACT,
        f"requires {kind} {namespace}/{name}, which this batch does not hold (or Linkerd refuses); "
        "Linkerd then ignores the policy, so it authorizes nothing",
        findings,
    )
    return None


def _nothing(
    obj: LinkerdObject,
    path: str,
    exactness: Exactness,
    message: str,
    findings: list[Finding] | None = None,
) -> None:
    if findings is not None:
        findings.append(obj.finding(path, exactness, message))
