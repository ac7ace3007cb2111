"""The translation decides as Linkerd does: Sigil's evaluator on the translated policies against the reference."""

from __future__ import annotations

from typing import Any

import pytest
from enforcer.linkerd_agreement import PORT_NAMES, disagreements, translate_batch
from enforcer.linkerd_docs import (
    authorization,
    deployment,
    identity,
    mesh_tls,
    namespace,
    networks,
    ref,
    server,
    server_authorization,
)

WEB = {"app": "web"}

SCENARIOS: dict[str, list[dict[str, Any]]] = {
    "one Server, no authorization": [server("web", 8080, match=WEB)],
    "identities of every form": [
        server("web", 8080, match=WEB),
        authorization("a", server="web", refs=[ref("MeshTLSAuthentication", "m")]),
        mesh_tls(
            "m",
            [identity("front", "shop"), "*.api.ops.serviceaccount.identity.linkerd.cluster.local"],
            refs=[ref("Namespace", "ops")],
        ),
    ],
    "any meshed client from networks with exceptions": [
        server("web", 8080, match=WEB),
        server("db", 5432, match={"tier": "back"}),
        authorization(
            "a", refs=[ref("MeshTLSAuthentication", "any"), ref("NetworkAuthentication", "n")]
        ),
        mesh_tls("any", ["*"]),
        networks("n", ("10.0.0.0/8", ["10.9.0.0/16"]), "fd00::/8"),
    ],
    "plaintext from one network, and one account": [
        server("web", 8080),
        authorization("net", server="web", refs=[ref("NetworkAuthentication", "n")]),
        authorization("sa", server="web", refs=[ref("ServiceAccount", "deployer", "ops")]),
        networks("n", "192.168.0.0/16"),
    ],
    "namespace defaults beside Servers": [
        namespace("shop", "all-authenticated"),
        namespace("ops", "deny"),
        server("web", 8080, match=WEB, access="all-unauthenticated"),
    ],
    "policies Linkerd ignores": [
        server("web", 8080),
        authorization("gone", server="web", refs=[ref("MeshTLSAuthentication", "gone")]),
        authorization(
            "two",
            server="web",
            refs=[ref("MeshTLSAuthentication", "m"), ref("ServiceAccount", "front")],
        ),
        mesh_tls("m", ["*"]),
    ],
    "ServiceAccounts named *, directly and by identityRefs": [
        server("web", 8080),
        authorization("direct", server="web", refs=[ref("ServiceAccount", "*")]),
        authorization("indirect", server="web", refs=[ref("MeshTLSAuthentication", "m")]),
        mesh_tls("m", refs=[ref("ServiceAccount", "*", "ops")]),
    ],
    "legacy ServerAuthorization with networks": [
        server("web", 8080, labels={"tier": "front"}),
        server_authorization(
            "s",
            {"selector": {"matchLabels": {"tier": "front"}}},
            {
                "meshTLS": {"identities": ["*.shop.serviceaccount.identity.linkerd.cluster.local"]},
                "networks": [{"cidr": "0.0.0.0/0", "except": ["203.0.113.0/24"]}],
            },
        ),
    ],
}


@pytest.mark.parametrize("default", ["all-unauthenticated", "all-authenticated", "deny", "audit"])
@pytest.mark.parametrize("objects", SCENARIOS.values(), ids=list(SCENARIOS))
def test_exact_translations_decide_as_linkerd(objects: list[dict[str, Any]], default: str) -> None:
    """On every case of the grid, Sigil running the translation decides as Linkerd would.

    Every scenario is reported exact but one: a policy Linkerd's admission refuses is reported refused, and
    translated as what Linkerd's index makes of it if it gets in anyway (nothing).
    """
    assert translate_batch(objects).exact is (objects is not SCENARIOS["policies Linkerd ignores"])
    assert [str(d) for d in disagreements(objects, cluster_default=default)] == []


def test_the_grid_tells_a_wrong_translation_apart() -> None:
    """The comparison can fail: Sigil running a Server moved to another port disagrees with Linkerd."""
    linkerd = [server("web", 8080, match=WEB)]
    moved = [server("web", 5432, match=WEB)]
    found = disagreements(linkerd, translated=moved)
    assert {(d.case.port, d.linkerd, d.sigil) for d in found} == {
        (8080, False, True),
        (5432, True, False),
    }


@pytest.mark.parametrize("default", ["all-unauthenticated", "deny"])
def test_cluster_policies_agree_under_linkerds_default_cluster_networks(default: str) -> None:
    """The approximate cluster-* translations decide as Linkerd does when its clusterNetworks are the default."""
    objects = [
        namespace("shop", "cluster-authenticated"),
        namespace("ops", "cluster-unauthenticated"),
        server("web", 8080, match=WEB, access="cluster-unauthenticated"),
        server("db", 5432, access="cluster-authenticated"),
        server_authorization("s", {"name": "web"}, {"meshTLS": {"identities": ["*"]}}),
    ]
    translation = translate_batch(objects)
    assert not translation.exact
    assert all("cluster" in f.message for f in translation.findings)
    assert [str(d) for d in disagreements(objects, cluster_default=default)] == []


def test_named_ports_agree_when_the_batch_holds_the_workloads() -> None:
    """Servers naming ports, resolved through the batch's Deployments, decide as Linkerd on those pods."""
    objects = [
        server("web", "http", match=WEB),
        server("db", "sql", match={"app": "db"}, access="all-authenticated"),
        authorization("a", server="web", refs=[ref("ServiceAccount", "front")]),
        *[
            deployment(app, {"app": app}, ports, namespace=ns)
            for app, ports in PORT_NAMES.items()
            for ns in ("shop", "ops")
        ],
    ]
    assert not translate_batch(objects).exact
    assert [str(d) for d in disagreements(objects)] == []


@pytest.mark.parametrize(
    "template",
    ["k8s/{namespace}/{service_account}", "ns/{namespace}/pod/{pod_name}/sa/{service_account}"],
)
@pytest.mark.parametrize(
    "scenario", ["identities of every form", "namespace defaults beside Servers"]
)
def test_translations_agree_under_other_workload_id_templates(scenario: str, template: str) -> None:
    """Identities become sources and patterns under the configured template, and still decide as Linkerd."""
    objects = SCENARIOS[scenario]
    assert translate_batch(objects, template=template).exact
    assert [str(d) for d in disagreements(objects, template=template)] == []
