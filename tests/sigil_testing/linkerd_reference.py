"""A reference evaluator of Linkerd's inbound authorization, written from Linkerd's documented semantics.

It answers one question the way a Linkerd proxy would: may this client (a Linkerd identity or none, from an
address) open a connection to this port of this pod, given these ``policy.linkerd.io`` objects, the
``Namespace`` objects and the cluster's ``proxy.defaultInboundPolicy``? It is deliberately naive (a scan of
every object per question) and shares no code with the translator in ``sigil.enforcer.policy.dialects.linkerd``,
so that tests comparing the two compare two readings of Linkerd, not one reading with itself.

The facts it encodes (linkerd/website ``reference/authorization-policy.md``; linkerd2 ``policy-controller``):

* A port some ``Server`` selects (its ``podSelector`` selects the pod and its ``port`` is the port, by number
  or by the name the pod's containers give it)
  admits a client only when one authorization of that Server admits it; otherwise the default decides: the
  pod's namespace's ``config.linkerd.io/default-inbound-policy`` annotation, else the cluster default.
* Authorizations of a Server: ``AuthorizationPolicy`` objects of its namespace whose ``targetRef`` is the
  Server or the namespace itself, ``ServerAuthorization`` objects selecting it by name or labels, and its
  ``accessPolicy`` (``deny`` when omitted) read as a default policy.
* An ``AuthorizationPolicy`` admits a client meeting every required authentication. It is ignored (admits
  nobody) when it names an authentication that does not exist, more than one identity authentication, or
  more than one ``NetworkAuthentication``. Without an identity authentication it admits clients with or
  without an identity; without a ``NetworkAuthentication``, every address.
* Identities match exactly, by ``*.suffix`` (the identity ends with ``.suffix``), or ``*`` (any identity).
  A ``ServiceAccount`` names ``<sa>.<ns>.serviceaccount.identity.linkerd.<td>``, compared as a whole (so
  an account named ``*`` matches nobody), a ``Namespace`` ``*.<ns>.serviceaccount...``, every account of it.
* A network admits an address inside its ``cidr`` and outside each ``except``.
* Two Servers selecting one pod's port: Linkerd's admission refuses the second; here the oldest
  (``creationTimestamp``, then name) wins.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LINKERD_CLUSTER_NETWORKS", "Connection", "linkerd_allows"]

LINKERD_CLUSTER_NETWORKS = (
    "10.0.0.0/8",
    "100.64.0.0/10",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "fd00::/8",
)

_ANNOTATION = "config.linkerd.io/default-inbound-policy"
_DEFAULTS = (
    "all-unauthenticated",
    "all-authenticated",
    "cluster-unauthenticated",
    "cluster-authenticated",
    "deny",
    "audit",
)

Obj = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Connection:
    """One inbound connection: the target pod (with the ports its containers name), the client's Linkerd
    identity (None: not meshed), its address."""

    namespace: str
    labels: Mapping[str, str]
    port: int
    identity: str | None
    address: str
    port_names: Mapping[str, int] = field(default_factory=dict)


def linkerd_allows(
    objects: Sequence[Obj],
    connection: Connection,
    *,
    cluster_default: str = "all-unauthenticated",
    trust_domain: str = "cluster.local",
) -> bool:
    """True when Linkerd would let ``connection`` through."""
    world = _World(objects, trust_domain)
    server = world.server_for(connection)
    if server is None:
        return _default_admits(world.default_for(connection.namespace, cluster_default), connection)
    access = server["spec"].get("accessPolicy", "deny")
    if _default_admits(access, connection):
        return True
    return any(admits(connection) for admits in world.authorizations(server))


def _port_number(port: object, connection: Connection) -> int | None:
    """A Server's port on the connection's pod: a number, or the number of the container port so named."""
    if isinstance(port, str):
        return connection.port_names.get(port)
    return port if isinstance(port, int) else None


def _default_admits(name: str, connection: Connection) -> bool:
    meshed = connection.identity is not None
    in_cluster = _in_any(connection.address, LINKERD_CLUSTER_NETWORKS)
    return {
        "all-unauthenticated": True,
        "audit": True,
        "all-authenticated": meshed,
        "cluster-unauthenticated": in_cluster,
        "cluster-authenticated": meshed and in_cluster,
        "deny": False,
    }[name]


class _World:
    def __init__(self, objects: Sequence[Obj], trust_domain: str) -> None:
        self.objects = list(objects)
        self.trust_domain = trust_domain

    def _all(self, kind: str, namespace: str | None = None) -> Iterable[Obj]:
        for obj in self.objects:
            if obj.get("kind") != kind:
                continue
            if namespace is not None and obj["metadata"].get("namespace") != namespace:
                continue
            yield obj

    def _one(self, kind: str, namespace: str, name: str) -> Obj | None:
        for obj in self._all(kind, namespace):
            if obj["metadata"]["name"] == name:
                return obj
        return None

    def default_for(self, namespace: str, cluster_default: str) -> str:
        for obj in self._all("Namespace"):
            if obj["metadata"]["name"] == namespace:
                value = (obj["metadata"].get("annotations") or {}).get(_ANNOTATION)
                if value in _DEFAULTS:
                    return str(value)
        return cluster_default

    def server_for(self, connection: Connection) -> Obj | None:
        candidates = [
            server
            for server in self._all("Server", connection.namespace)
            if "externalWorkloadSelector" not in server["spec"]
            and _port_number(server["spec"].get("port"), connection) == connection.port
            and server["spec"].get("accessPolicy", "deny") in _DEFAULTS
            and _selects(server["spec"].get("podSelector"), connection.labels)
        ]
        candidates.sort(
            key=lambda s: (str(s["metadata"].get("creationTimestamp") or ""), s["metadata"]["name"])
        )
        return candidates[0] if candidates else None

    def authorizations(self, server: Obj) -> Iterable[Any]:
        namespace, name = server["metadata"]["namespace"], server["metadata"]["name"]
        for policy in self._all("AuthorizationPolicy", namespace):
            target = policy["spec"].get("targetRef") or {}
            if (target.get("kind") == "Server" and target.get("name") == name) or (
                target.get("kind") == "Namespace" and target.get("name") == namespace
            ):
                yield lambda c, p=policy: self._policy_admits(p, c)
        for legacy in self._all("ServerAuthorization", namespace):
            chosen = legacy["spec"].get("server") or {}
            if chosen.get("name") == name or (
                "selector" in chosen
                and _selects(chosen["selector"], server["metadata"].get("labels") or {})
            ):
                yield lambda c, s=legacy: self._legacy_admits(s, c)

    def _policy_admits(self, policy: Obj, connection: Connection) -> bool:
        namespace = policy["metadata"]["namespace"]
        refs = policy["spec"].get("requiredAuthenticationRefs") or []
        identity_refs = [
            r for r in refs if r.get("kind") in ("MeshTLSAuthentication", "ServiceAccount")
        ]
        network_refs = [r for r in refs if r.get("kind") == "NetworkAuthentication"]
        if len(identity_refs) > 1 or len(network_refs) > 1:
            return False
        if len(identity_refs) + len(network_refs) != len(refs):
            return False
        for ref in identity_refs:
            ref_namespace = ref.get("namespace") or namespace
            wanted: list[str | _Exact]
            if ref["kind"] == "ServiceAccount":
                wanted = [_Exact(self._account_identity(ref["name"], ref_namespace))]
            else:
                authn = self._one("MeshTLSAuthentication", ref_namespace, ref["name"])
                if authn is None:
                    return False
                wanted = self._identities(authn)
                if not wanted:
                    return False
            if not any(_identity_matches(pattern, connection.identity) for pattern in wanted):
                return False
        for ref in network_refs:
            authn = self._one(
                "NetworkAuthentication", ref.get("namespace") or namespace, ref["name"]
            )
            if authn is None or not _in_networks(connection.address, authn["spec"]["networks"]):
                return False
        return True

    def _identities(self, authn: Obj) -> list[str | _Exact]:
        found: list[str | _Exact] = [str(i) for i in authn["spec"].get("identities") or []]
        for ref in authn["spec"].get("identityRefs") or []:
            if ref["kind"] == "ServiceAccount":
                namespace = ref.get("namespace") or authn["metadata"]["namespace"]
                found.append(_Exact(self._account_identity(ref["name"], namespace)))
            elif ref["kind"] == "Namespace":
                found.append(f"*.{ref['name']}.serviceaccount.identity.linkerd.{self.trust_domain}")
        return found

    def _account_identity(self, name: str, namespace: str) -> str:
        return f"{name}.{namespace}.serviceaccount.identity.linkerd.{self.trust_domain}"

    def _legacy_admits(self, legacy: Obj, connection: Connection) -> bool:
        client = legacy["spec"].get("client") or {}
        networks = client.get("networks") or [{"cidr": cidr} for cidr in LINKERD_CLUSTER_NETWORKS]
        if not _in_networks(connection.address, networks):
            return False
        if client.get("unauthenticated"):
            return True
        mesh = client.get("meshTLS") or {}
        if mesh.get("unauthenticatedTLS"):
            return connection.identity is not None
        wanted: list[str | _Exact] = [str(identity) for identity in mesh.get("identities") or []]
        wanted += [
            _Exact(
                self._account_identity(
                    a["name"], a.get("namespace") or legacy["metadata"]["namespace"]
                )
            )
            for a in mesh.get("serviceAccounts") or []
        ]
        return any(_identity_matches(pattern, connection.identity) for pattern in wanted)


@dataclass(frozen=True, slots=True)
class _Exact:
    """An identity Linkerd builds from a ServiceAccount and compares as a whole, never as a pattern."""

    identity: str


def _identity_matches(pattern: str | _Exact, identity: str | None) -> bool:
    if identity is None:
        return False
    if isinstance(pattern, _Exact):
        return identity == pattern.identity
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return identity.endswith(pattern[1:])
    return identity == pattern


def _in_networks(address: str, networks: Sequence[Mapping[str, Any]]) -> bool:
    for network in networks:
        if _in_any(address, [network["cidr"]]) and not _in_any(
            address, network.get("except") or []
        ):
            return True
    return False


def _in_any(address: str, blocks: Iterable[str]) -> bool:
    ip = ipaddress.ip_address(address)
    for block in blocks:
        net = ipaddress.ip_network(block, strict=False)
        if net.version == ip.version and ip in net:
            return True
    return False


def _selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    if selector is None:
        return False
    if any(labels.get(key) != value for key, value in (selector.get("matchLabels") or {}).items()):
        return False
    for requirement in selector.get("matchExpressions") or []:
        key, values = requirement["key"], requirement.get("values") or []
        has = key in labels
        ok = {
            "In": has and labels.get(key) in values,
            "NotIn": not (has and labels.get(key) in values),
            "Exists": has,
            "DoesNotExist": not has,
        }[requirement["operator"]]
        if not ok:
            return False
    return True
