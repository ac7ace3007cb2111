"""``sigil-enforcer check`` on a directory of Istio policy answers as Istio's sidecar would, and says what it
approximated or refused."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from enforcer.istio_docs import istio_ap, op, src, when
from enforcer.policy_docs import dump
from sigil_testing.istio_reference import Connection, Mesh, Workload, decide

from sigil.enforcer.cli import main

Write = Callable[[Mapping[str, str]], Path]
MESH = Mesh(trust_domain="example.org", root_namespace="mesh-root")
POLICIES = [
    istio_ap("no-ssh", namespace="mesh-root", action="DENY", rules=[{"to": [op(ports=["22"])]}]),
    istio_ap(
        "outsiders-out",
        namespace="mesh-root",
        action="DENY",
        rules=[{"from": [src(notNamespaces=["shop", "ops"])], "to": [op(ports=["5432"])]}],
    ),
    istio_ap(
        "db",
        match={"app": "db"},
        rules=[
            {"from": [src(serviceAccounts=["web"])], "to": [op(ports=["5432"])]},
            {
                "from": [src(principals=["cluster.local/ns/ops/sa/admin"])],
                "to": [op(notPorts=["443"])],
            },
            {"from": [src(namespaces=["monitoring"])], "to": [op(methods=["GET"])]},
            {"when": [when("source.ip", ["10.9.0.0/16"])]},
        ],
    ),
]
PEERS = [
    None,
    "spiffe://example.org/ns/shop/sa/web",
    "spiffe://example.org/ns/ops/sa/admin",
    "spiffe://example.org/ns/monitoring/sa/prometheus",
    "spiffe://far.org/ns/shop/sa/web",
]


@pytest.fixture
def istio_policies(write_policies: Write) -> Path:
    """The policy set above as Istio files, one with the mesh-wide policies, one with the namespace's."""
    return write_policies({"mesh.yaml": dump(*POLICIES[:2]), "shop.yaml": dump(POLICIES[2])})


def test_check_decides_istio_files_as_istio(
    istio_policies: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """For every peer, port and address of the grid, ``check``'s exit code is Istio's verdict."""
    workload = Workload("shop", {"app": "db"})
    wrong = []
    for peer, port, address in itertools.product(PEERS, (22, 443, 5432), ("10.0.0.5", "10.9.1.1")):
        code = main(
            [
                "check", "--policies", str(istio_policies), "--peer", peer or "none",
                "--namespace", "shop", "--labels", "app=db", "--port", str(port),
                "--peer-address", address, "--root-namespace", "mesh-root",
            ]
        )  # fmt: skip
        expected = decide(POLICIES, workload, Connection(peer, address, port), MESH)
        if (code == 0) != expected.allowed:
            wrong.append((peer, port, address, code, expected))
    assert wrong == []
    warnings = capsys.readouterr().err
    assert "approximate: istio AuthorizationPolicy shop/db" in warnings
    assert "spec.rules[2].to[0].operation.methods" in warnings


def test_check_reports_a_refused_istio_policy(
    write_policies: Write, capsys: pytest.CaptureFixture[str]
) -> None:
    """A CUSTOM policy is not translated, and ``check`` says so on stderr, naming it and why."""
    directory = write_policies({"custom.yaml": dump(istio_ap("ext", action="CUSTOM", rules=[{}]))})
    main(
        [
            "check",
            "--policies",
            str(directory),
            "--peer",
            "none",
            "--namespace",
            "shop",
            "--port",
            "80",
        ]
    )
    err = capsys.readouterr().err
    assert "refused: istio AuthorizationPolicy shop/ext" in err
    assert "external authorizer" in err


def test_trust_domain_aliases_reach_the_translation(
    write_policies: Write, capsys: pytest.CaptureFixture[str]
) -> None:
    """Istio's literal ``cluster.local`` principal means the local domain and its aliases:
    ``--trust-domain-alias`` admits the old domain's peer; without it, only the local one; a bad alias is
    refused by name."""
    directory = write_policies(
        {
            "db.yaml": dump(
                istio_ap(
                    "db",
                    match={"app": "db"},
                    rules=[{"from": [src(principals=["cluster.local/ns/shop/sa/web"])]}],
                )
            )
        }
    )

    def check(peer: str, *extra: str) -> int:
        argv = ["check", "--policies", str(directory), "--trust-domain", "example.org"]
        argv += ["--namespace", "shop", "--labels", "app=db", "--port", "5432", "--peer", peer]
        return main([*argv, *extra])

    old = "spiffe://old.example/ns/shop/sa/web"
    assert check("spiffe://example.org/ns/shop/sa/web") == 0
    assert check(old) == 1
    assert check(old, "--trust-domain-alias", "old.example") == 0
    capsys.readouterr()
    assert check(old, "--trust-domain-alias", "Not A Domain!") == 2
    assert "--trust-domain-alias" in capsys.readouterr().err
