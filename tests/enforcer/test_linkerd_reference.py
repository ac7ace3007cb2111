"""Linkerd's inbound authorization semantics, as table cases on the reference evaluator (our own cases)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from enforcer.linkerd_docs import (
    authorization,
    identity,
    mesh_tls,
    namespace,
    networks,
    ref,
    server,
    server_authorization,
)
from sigil_testing.linkerd_reference import Connection, linkerd_allows

WEB = {"app": "web"}
FRONT = identity("front", "shop")
OPS = identity("deployer", "ops")
POD_NET = "10.1.2.3"
PUBLIC = "203.0.113.5"


@dataclass(frozen=True)
class Case:
    """Objects, the cluster default, one connection to a ``shop`` pod, and Linkerd's verdict."""

    objects: list[dict[str, object]]
    client: str | None
    allowed: bool
    port: int = 8080
    address: str = POD_NET
    default: str = "all-unauthenticated"
    labels: dict[str, str] = field(default_factory=lambda: dict(WEB))
    pod_namespace: str = "shop"


WEB_SERVER = server("web", 8080, match=WEB)
FRONT_ONLY = [
    WEB_SERVER,
    authorization("front", server="web", refs=[ref("MeshTLSAuthentication", "front")]),
    mesh_tls("front", [FRONT]),
]

CASES = {
    # Defaults: ports no Server selects.
    "no server, default all-unauthenticated admits plaintext": Case([], None, True),
    "no server, cluster default deny refuses everyone": Case([], FRONT, False, default="deny"),
    "no server, audit admits everyone": Case([], None, True, default="audit"),
    "no server, all-authenticated refuses plaintext": Case(
        [], None, False, default="all-authenticated"
    ),
    "no server, all-authenticated admits a meshed client": Case(
        [], FRONT, True, default="all-authenticated"
    ),
    "cluster-authenticated admits a meshed client from the pod network": Case(
        [], FRONT, True, default="cluster-authenticated"
    ),
    "cluster-authenticated refuses a meshed client from outside the cluster": Case(
        [], FRONT, False, default="cluster-authenticated", address=PUBLIC
    ),
    "cluster-unauthenticated admits plaintext from the cluster": Case(
        [], None, True, default="cluster-unauthenticated"
    ),
    "cluster-unauthenticated refuses plaintext from outside": Case(
        [], None, False, default="cluster-unauthenticated", address=PUBLIC
    ),
    "namespace annotation overrides the cluster default": Case(
        [namespace("shop", "all-authenticated")], None, False
    ),
    "another namespace's annotation does not apply": Case([namespace("ops", "deny")], None, True),
    # Servers: deny unless authorized, per port.
    "a Server with no authorization refuses even under an allow default": Case(
        [WEB_SERVER], FRONT, False
    ),
    "a Server leaves the pod's other ports to the default": Case(
        [WEB_SERVER], None, True, port=9090
    ),
    "a Server leaves pods it does not select to the default": Case(
        [WEB_SERVER], None, True, labels={"app": "db"}
    ),
    "a Server's accessPolicy all-authenticated admits meshed clients": Case(
        [server("web", 8080, match=WEB, access="all-authenticated")], FRONT, True
    ),
    "a Server's accessPolicy all-authenticated refuses plaintext": Case(
        [server("web", 8080, match=WEB, access="all-authenticated")], None, False
    ),
    # AuthorizationPolicy and identities.
    "an exact identity is admitted": Case(FRONT_ONLY, FRONT, True),
    "another identity is refused": Case(FRONT_ONLY, OPS, False),
    "plaintext is refused by an identity requirement": Case(FRONT_ONLY, None, False),
    "a namespace wildcard admits every account of that namespace": Case(
        [
            WEB_SERVER,
            authorization("a", server="web", refs=[ref("MeshTLSAuthentication", "m")]),
            mesh_tls("m", ["*.ops.serviceaccount.identity.linkerd.cluster.local"]),
        ],
        OPS,
        True,
    ),
    "a namespace wildcard matches on a label boundary only": Case(
        [
            WEB_SERVER,
            authorization("a", server="web", refs=[ref("MeshTLSAuthentication", "m")]),
            mesh_tls("m", ["*.ops.serviceaccount.identity.linkerd.cluster.local"]),
        ],
        identity("deployer", "devops"),
        False,
    ),
    "a bare * admits every meshed client": Case(
        [
            WEB_SERVER,
            authorization("a", server="web", refs=[ref("MeshTLSAuthentication", "m")]),
            mesh_tls("m", ["*"]),
        ],
        identity("x", "y", "other.org"),
        True,
    ),
    "a bare * refuses plaintext": Case(
        [
            WEB_SERVER,
            authorization("a", server="web", refs=[ref("MeshTLSAuthentication", "m")]),
            mesh_tls("m", ["*"]),
        ],
        None,
        False,
    ),
    "identityRefs name a ServiceAccount of the authentication's namespace": Case(
        [
            WEB_SERVER,
            authorization("a", server="web", refs=[ref("MeshTLSAuthentication", "m")]),
            mesh_tls("m", refs=[ref("ServiceAccount", "front")]),
        ],
        FRONT,
        True,
    ),
    "identityRefs to a Namespace admit its accounts": Case(
        [
            WEB_SERVER,
            authorization("a", server="web", refs=[ref("MeshTLSAuthentication", "m")]),
            mesh_tls("m", refs=[ref("Namespace", "ops")]),
        ],
        OPS,
        True,
    ),
    "a ServiceAccount ref is an exact identity": Case(
        [
            WEB_SERVER,
            authorization("a", server="web", refs=[ref("ServiceAccount", "deployer", "ops")]),
        ],
        OPS,
        True,
    ),
    "a policy with no required authentication admits everyone": Case(
        [WEB_SERVER, authorization("a", server="web")], None, True, address=PUBLIC
    ),
    # Networks.
    "a NetworkAuthentication admits plaintext from its networks": Case(
        [
            WEB_SERVER,
            authorization("a", server="web", refs=[ref("NetworkAuthentication", "n")]),
            networks("n", ("10.0.0.0/8", ["10.9.0.0/16"])),
        ],
        None,
        True,
    ),
    "a network's exception is refused": Case(
        [
            WEB_SERVER,
            authorization("a", server="web", refs=[ref("NetworkAuthentication", "n")]),
            networks("n", ("10.0.0.0/8", ["10.1.0.0/16"])),
        ],
        None,
        False,
    ),
    "an exception of one network does not remove another network": Case(
        [
            WEB_SERVER,
            authorization("a", server="web", refs=[ref("NetworkAuthentication", "n")]),
            networks("n", ("10.0.0.0/8", ["10.1.0.0/16"]), "10.1.2.0/24"),
        ],
        None,
        True,
    ),
    "identity and network are both required": Case(
        [
            WEB_SERVER,
            authorization(
                "both",
                server="web",
                refs=[ref("MeshTLSAuthentication", "front"), ref("NetworkAuthentication", "n")],
            ),
            mesh_tls("front", [FRONT]),
            networks("n", "192.168.0.0/16"),
        ],
        FRONT,
        False,
    ),
    # Policies Linkerd ignores.
    "a policy naming a missing MeshTLSAuthentication authorizes nothing": Case(
        [WEB_SERVER, authorization("a", server="web", refs=[ref("MeshTLSAuthentication", "gone")])],
        FRONT,
        False,
    ),
    "a policy naming two MeshTLSAuthentications is ignored": Case(
        [
            WEB_SERVER,
            mesh_tls("m1", ["*"]),
            mesh_tls("m2", ["*"]),
            authorization(
                "a",
                server="web",
                refs=[ref("MeshTLSAuthentication", "m1"), ref("MeshTLSAuthentication", "m2")],
            ),
        ],
        FRONT,
        False,
    ),
    "a policy naming two NetworkAuthentications is ignored": Case(
        [
            WEB_SERVER,
            networks("n1", "0.0.0.0/0"),
            networks("n2", "0.0.0.0/0"),
            authorization(
                "a",
                server="web",
                refs=[ref("NetworkAuthentication", "n1"), ref("NetworkAuthentication", "n2")],
            ),
        ],
        None,
        False,
    ),
    # Targets.
    "a policy targeting the namespace authorizes every Server of it": Case(
        [WEB_SERVER, authorization("a", refs=[ref("ServiceAccount", "front")])], FRONT, True
    ),
    "a policy targeting another namespace authorizes nothing": Case(
        [WEB_SERVER, authorization("a", target={"kind": "Namespace", "name": "ops"})], FRONT, False
    ),
    "a policy targeting another Server does not authorize this one": Case(
        [WEB_SERVER, authorization("a", server="db")], FRONT, False
    ),
    "the oldest of two overlapping Servers decides": Case(
        [
            server("young", 8080, access="all-unauthenticated", created="2026-02-01T00:00:00Z"),
            server("old", 8080, created="2025-01-01T00:00:00Z"),
        ],
        FRONT,
        False,
    ),
    # ServerAuthorization (legacy).
    "a ServerAuthorization selects Servers by label": Case(
        [
            server("web", 8080, match=WEB, labels={"tier": "front"}),
            server_authorization(
                "s",
                {"selector": {"matchLabels": {"tier": "front"}}},
                {"meshTLS": {"serviceAccounts": [{"name": "front"}]}},
            ),
        ],
        FRONT,
        True,
    ),
    "a ServerAuthorization without networks admits the cluster networks only": Case(
        [WEB_SERVER, server_authorization("s", {"name": "web"}, {"unauthenticated": True})],
        None,
        False,
        address=PUBLIC,
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
def test_linkerd_semantics(case: Case) -> None:
    """The reference evaluator gives Linkerd's documented verdict for each case."""
    connection = Connection(case.pod_namespace, case.labels, case.port, case.client, case.address)
    assert linkerd_allows(case.objects, connection, cluster_default=case.default) is case.allowed


def test_a_service_account_named_star_matches_nobody() -> None:
    """Linkerd compares a ServiceAccount's identity as a whole, so the name ``*`` is not a wildcard."""
    objects = [
        server("web", 8080, match=WEB),
        authorization("a", server="web", refs=[ref("ServiceAccount", "*")]),
    ]
    connection = Connection("shop", WEB, 8080, FRONT, POD_NET)
    assert linkerd_allows(objects, connection) is False


def test_a_named_port_is_the_pods_port_of_that_name() -> None:
    """A Server naming its port selects the number the pod's containers give that name, and no other."""
    objects = [server("web", "http", match=WEB)]
    named = {"http": 8080}
    assert linkerd_allows(objects, Connection("shop", WEB, 8080, None, POD_NET, named)) is False
    assert linkerd_allows(objects, Connection("shop", WEB, 9090, None, POD_NET, named)) is True
    assert linkerd_allows(objects, Connection("shop", WEB, 8080, None, POD_NET)) is True
