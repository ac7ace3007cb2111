"""A reference evaluator of Istio's AuthorizationPolicy on plain TCP, written from Istio's documented rules.

It shares no code with the translator (``sigil.enforcer.policy.dialects.istio``): it matches principals the way
Envoy does after istiod built its matchers, with regular expressions over the peer's URI SAN, and walks the
documented order (istio.io "Authorization policy precedence"; istio/api ``authorization_policy.proto``):
DENY first, then allow when no ALLOW policy applies, then allow on a matching ALLOW rule, else deny.

The facts it encodes, each from istio/istio ``pilot/pkg/security/authz/model`` (``generator.go``, ``model.go``),
``matcher/string.go`` and ``pilot/pkg/security/trustdomain/bundle.go``:

* a principal is the SPIFFE ID; a plaintext peer has the empty principal, which no identity value matches;
* ``principals`` values: ``*`` any non-empty principal, ``x*`` prefix, ``*x`` suffix, else exact, all behind
  ``spiffe://``; before that, a five-part value of the local trust domain, an alias or ``cluster.local`` stands
  for the same path in every one of them;
* ``namespaces`` values: the regex ``.*/ns/<value>/.*`` (``*`` → ``.*``); ``serviceAccounts``:
  ``spiffe://.+/ns/<ns>/(.+/|)sa/<sa>(/.+)?``; ``trustDomains``: the peer's trust domain, with the local one,
  aliases and ``cluster.local`` standing for each other;
* on TCP an ALLOW rule holding any HTTP-only value never matches; a DENY rule's HTTP-only values are skipped.

What the translation refuses (CUSTOM, ``targetRefs``, ``destination.ip``, ``connection.sni``) raises
:class:`UnmodelledError`: the reference decides only what a faithful translation could.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Connection", "Mesh", "UnmodelledError", "Verdict", "Workload", "decide"]

_HTTP_SOURCE_FIELDS = ("requestPrincipals", "notRequestPrincipals")
_HTTP_OPERATION_FIELDS = ("hosts", "notHosts", "methods", "notMethods", "paths", "notPaths")


class UnmodelledError(Exception):
    """The policy uses something this reference does not decide (and the translation refuses)."""


@dataclass(frozen=True)
class Mesh:
    """The mesh-wide settings a decision depends on (MeshConfig)."""

    trust_domain: str = "cluster.local"
    aliases: tuple[str, ...] = ()
    root_namespace: str = "istio-system"


@dataclass(frozen=True)
class Workload:
    """The workload receiving the connection."""

    namespace: str
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Connection:
    """One TCP connection: the peer's SPIFFE ID (None: plaintext), its address, the destination port."""

    peer: str | None
    address: str
    port: int


@dataclass(frozen=True)
class Verdict:
    """Istio's decision and the policy that made it (None: no policy decided)."""

    allowed: bool
    reason: str
    policy: str | None = None


def decide(
    policies: Iterable[Mapping[str, Any]], workload: Workload, connection: Connection, mesh: Mesh
) -> Verdict:
    """What Istio's sidecar decides for ``connection`` to ``workload`` under ``policies``."""
    applying = [p for p in policies if _applies(p, workload, mesh)]
    for policy in applying:
        if _action(policy) == "DENY" and _any_rule(policy, connection, mesh, allow=False):
            return Verdict(False, "a DENY policy matched", _name(policy))
    allows = [p for p in applying if _action(p) == "ALLOW"]
    if not allows:
        return Verdict(True, "no ALLOW policy applies")
    for candidate in allows:
        if _any_rule(candidate, connection, mesh, allow=True):
            return Verdict(True, "an ALLOW policy matched", _name(candidate))
    return Verdict(False, "ALLOW policies apply and none matched")


def _name(policy: Mapping[str, Any]) -> str:
    return f"{policy['metadata']['namespace']}/{policy['metadata']['name']}"


def _spec(policy: Mapping[str, Any]) -> Mapping[str, Any]:
    return policy.get("spec") or {}


def _action(policy: Mapping[str, Any]) -> str:
    action = str(_spec(policy).get("action", "ALLOW"))
    if action == "CUSTOM":
        raise UnmodelledError("CUSTOM policies ask an external authorizer")
    return action


def _applies(policy: Mapping[str, Any], workload: Workload, mesh: Mesh) -> bool:
    metadata = policy["metadata"]
    if str((metadata.get("annotations") or {}).get("istio.io/dry-run", "")).lower() == "true":
        return False
    if metadata["namespace"] not in (workload.namespace, mesh.root_namespace):
        return False
    spec = _spec(policy)
    if spec.get("targetRefs") or spec.get("targetRef"):
        raise UnmodelledError("targetRefs name gateways and waypoints")
    if _action(policy) == "AUDIT":
        return False
    wanted = (spec.get("selector") or {}).get("matchLabels") or {}
    return all(workload.labels.get(k) == v for k, v in wanted.items())


def _any_rule(
    policy: Mapping[str, Any], connection: Connection, mesh: Mesh, *, allow: bool
) -> bool:
    namespace = policy["metadata"]["namespace"]
    return any(
        _rule(rule or {}, connection, mesh, allow=allow, namespace=namespace)
        for rule in _spec(policy).get("rules") or []
    )


def _rule(
    rule: Mapping[str, Any], connection: Connection, mesh: Mesh, *, allow: bool, namespace: str
) -> bool:
    froms = [entry.get("source") or {} for entry in rule.get("from") or []]
    tos = [entry.get("operation") or {} for entry in rule.get("to") or []]
    whens = list(rule.get("when") or [])
    http = any(s.get(f) for s in froms for f in _HTTP_SOURCE_FIELDS) or any(
        o.get(f) for o in tos for f in _HTTP_OPERATION_FIELDS
    )
    for condition in whens:
        key = condition["key"]
        if key in ("destination.ip", "connection.sni") or key.startswith("experimental."):
            raise UnmodelledError(f"the condition {key}")
        if key.startswith("request.") and (condition.get("values") or condition.get("notValues")):
            http = True
    if http and allow:
        return False  # istiod drops the whole rule from a TCP ALLOW filter
    source_ok = not froms or any(_source(s, connection, mesh, namespace) for s in froms)
    operation_ok = not tos or any(_operation(o, connection.port) for o in tos)
    return (
        source_ok
        and operation_ok
        and all(_condition(c, connection, mesh, namespace) for c in whens)
    )


def _field(values: Sequence[str] | None, not_values: Sequence[str] | None, test: Any) -> bool:
    """Any of ``values`` (when given) and none of ``not_values``."""
    if values and not any(test(v) for v in values):
        return False
    return not (not_values and any(test(v) for v in not_values))


def _source(source: Mapping[str, Any], c: Connection, mesh: Mesh, namespace: str) -> bool:
    checks = [
        ("principals", lambda v: _principal_matches(v, c.peer, mesh)),
        ("namespaces", lambda v: _namespace_matches(v, c.peer)),
        ("serviceAccounts", lambda v: _service_account_matches(v, c.peer, namespace)),
        ("trustDomains", lambda v: _trust_domain_matches(v, c.peer, mesh)),
        ("ipBlocks", lambda v: _in_block(v, c.address)),
        ("remoteIpBlocks", lambda v: _in_block(v, c.address)),
    ]
    return all(
        _field(source.get(name), source.get("not" + name[0].upper() + name[1:]), test)
        for name, test in checks
    )


def _operation(operation: Mapping[str, Any], port: int) -> bool:
    return _field(operation.get("ports"), operation.get("notPorts"), lambda v: int(v) == port)


def _condition(condition: Mapping[str, Any], c: Connection, mesh: Mesh, namespace: str) -> bool:
    key = condition["key"]
    tests = {
        "source.ip": lambda v: _in_block(v, c.address),
        "remote.ip": lambda v: _in_block(v, c.address),
        "source.namespace": lambda v: _namespace_matches(v, c.peer),
        "source.principal": lambda v: _principal_matches(v, c.peer, mesh),
        "source.serviceAccount": lambda v: _service_account_matches(v, c.peer, namespace),
        "destination.port": lambda v: int(v) == c.port,
    }
    if key not in tests:
        return True  # HTTP-only, only reached in a DENY rule: skipped on TCP
    return _field(condition.get("values"), condition.get("notValues"), tests[key])


def _principal_matches(value: str, peer: str | None, mesh: Mesh) -> bool:
    principal = peer or ""
    return any(_string_match(v, principal) for v in _with_aliases(value, mesh))


def _with_aliases(value: str, mesh: Mesh) -> list[str]:
    parts = value.split("/")
    domains = [mesh.trust_domain, *mesh.aliases]
    if len(parts) != 5 or parts[0].startswith("*"):
        return [value]
    if parts[0] != "cluster.local" and parts[0] not in domains:
        return [value]
    return ["/".join([domain, *parts[1:]]) for domain in domains]


def _string_match(value: str, principal: str) -> bool:
    if value == "*":
        return re.fullmatch(".+", principal) is not None
    if value.startswith("*"):
        return re.fullmatch("spiffe://.*" + re.escape(value[1:]), principal) is not None
    if value.endswith("*"):
        return principal.startswith("spiffe://" + value[:-1])
    return principal == "spiffe://" + value


def _namespace_matches(value: str, peer: str | None) -> bool:
    pattern = ".*/ns/" + value.replace("*", ".*") + "/.*"
    return re.fullmatch(pattern, peer or "") is not None


def _service_account_matches(value: str, peer: str | None, namespace: str) -> bool:
    ns, slash, sa = value.partition("/")
    if not slash:  # a bare name is an account of the policy's own namespace
        ns, sa = namespace, value
    pattern = f"spiffe://.+/ns/{ns}/(.+/|)sa/{sa}(/.+)?"
    return re.fullmatch(pattern, peer or "") is not None


def _trust_domain_matches(value: str, peer: str | None, mesh: Mesh) -> bool:
    if peer is None:
        return False
    domain = peer.removeprefix("spiffe://").split("/", 1)[0]
    local = {mesh.trust_domain, *mesh.aliases}
    if value in local or value == "cluster.local":
        return domain in local
    return domain == value


def _in_block(value: str, address: str) -> bool:
    block = ipaddress.ip_network(value, strict=False)
    peer = ipaddress.ip_address(address)
    return peer.version == block.version and peer in block
