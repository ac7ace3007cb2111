"""Linkerd's policy files read where Sigil reads policies: ``sigil-enforcer check`` and ``effective`` on them."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from enforcer.linkerd_docs import (
    authorization,
    identity,
    mesh_tls,
    namespace,
    networks,
    ref,
    server,
)
from enforcer.policy_docs import dump

from sigil.enforcer.cli import main
from sigil.enforcer.policy.dialects.base import SourcedDocument, TranslateOptions
from sigil.enforcer.policy.foreign import translate_foreign

Write = Callable[[Mapping[str, str]], Path]
FRONT = "spiffe://cluster.local/ns/shop/sa/front"
OTHER = "spiffe://cluster.local/ns/ops/sa/deployer"


@pytest.fixture
def linkerd_dir(write_policies: Write) -> Path:
    """A Server on port 8080 of the web pods, admitting the front account from the pod network only."""
    return write_policies(
        {
            "server.yaml": dump(server("web", 8080, match={"app": "web"})),
            "authz.yaml": dump(
                authorization(
                    "front",
                    server="web",
                    refs=[
                        ref("MeshTLSAuthentication", "front"),
                        ref("NetworkAuthentication", "pods"),
                    ],
                ),
                mesh_tls("front", [identity("front", "shop")]),
                networks("pods", ("10.0.0.0/8", ["10.9.0.0/16"])),
            ),
        }
    )


def check(directory: Path, peer: str, port: int, address: str = "10.1.2.3", *extra: str) -> int:
    argv = ["check", "--policies", str(directory), "--peer", peer, "--namespace", "shop"]
    argv += ["--labels", "app=web", "--port", str(port), "--peer-address", address]
    return main([*argv, "--trust-domain", "cluster.local", *extra])


@pytest.mark.parametrize(
    ("peer", "port", "address", "allowed"),
    [
        (FRONT, 8080, "10.1.2.3", True),
        (FRONT, 8080, "10.9.0.1", False),
        (OTHER, 8080, "10.1.2.3", False),
        ("none", 8080, "10.1.2.3", False),
        ("none", 9090, "203.0.113.5", True),
    ],
)
def test_check_decides_linkerd_policy_as_linkerd(
    linkerd_dir: Path,
    capsys: pytest.CaptureFixture[str],
    peer: str,
    port: int,
    address: str,
    allowed: bool,
) -> None:
    """The Server's port admits only what its authorization admits; other ports follow the default."""
    assert check(linkerd_dir, peer, port, address) == (0 if allowed else 1)
    assert capsys.readouterr().out == ("allowed\n" if allowed else "denied\n")


def test_check_with_linkerds_deny_default(
    linkerd_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Linkerd's cluster default deny is --default deny: ports without a Server refuse."""
    assert check(linkerd_dir, FRONT, 9090, "10.1.2.3", "--default", "deny") == 1


def test_explain_names_the_linkerd_objects(
    linkerd_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The deciding policy is the Server's translation, naming the Linkerd objects it came from."""
    assert check(linkerd_dir, FRONT, 8080, "10.1.2.3", "--explain") == 0
    out = capsys.readouterr().out
    assert "linkerd-server-web" in out


def test_an_http_route_target_makes_check_refuse(
    write_policies: Write, capsys: pytest.CaptureFixture[str]
) -> None:
    """L7 policy is never silently dropped: check refuses the set, naming what was not translated."""
    route = {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "api"}
    directory = write_policies(
        {"a.yaml": dump(server("web", 8080), authorization("by-route", target=route))}
    )
    assert check(directory, FRONT, 8080) == 2
    assert "AuthorizationPolicy shop/by-route" in capsys.readouterr().err


def test_effective_shows_the_server_policy_on_its_port(
    linkerd_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``effective`` lists the translated Server policy with the Linkerd objects it came from."""
    argv = [
        "effective",
        "--policies",
        str(linkerd_dir),
        "--namespace",
        "shop",
        "--labels",
        "app=web",
    ]
    assert main([*argv, "--trust-domain", "cluster.local", "--output", "json"]) == 0
    view = json.loads(capsys.readouterr().out)
    (policy,) = view["policies"]
    assert policy["name"] == "linkerd-server-web"
    assert policy["target_ports"] == [8080]
    assert policy["source"]["name"].startswith("translated from linkerd: Server shop/web")


def test_a_namespace_beside_the_linkerd_policy_brings_its_default(write_policies: Write) -> None:
    """A Namespace object in the directory reaches the translator: its deny annotation closes unserved ports."""
    directory = write_policies({"server.yaml": dump(server("web", 8080, match={"app": "web"}))})
    # Port 9090 is served by no Server: it follows the cluster default (allow), until the namespace says deny.
    assert check(directory, FRONT, 9090, "10.1.2.3", "--default", "allow") == 0
    write_policies({"namespace.yaml": dump(namespace("shop", "deny"))})
    assert check(directory, FRONT, 9090, "10.1.2.3", "--default", "allow") == 1


def test_a_namespace_without_linkerd_policy_is_refused_by_name(
    write_policies: Write, capsys: pytest.CaptureFixture[str]
) -> None:
    """Sigil's own policy does not read Namespace objects: one found alone is refused, saying why."""
    directory = write_policies({"namespace.yaml": dump(namespace("shop", "deny"))})
    assert check(directory, FRONT, 9090) == 2
    assert "read only beside Linkerd policy" in capsys.readouterr().err


def test_an_installed_linkerd_translates_a_namespace_alone() -> None:
    """Where Linkerd's kinds are known to be served (the issuer's cluster), a namespace's annotation is
    translated with no Linkerd policy beside it; without that knowledge the same document is refused."""
    document = SourcedDocument(namespace("shop", "deny"), "kubernetes Namespace shop")
    alone = translate_foreign([document], TranslateOptions())
    assert not alone.documents
    assert any("read only beside Linkerd policy" in str(e) for e in alone.errors)
    installed = translate_foreign([document], TranslateOptions(), installed=("policy.linkerd.io",))
    assert not installed.errors
    (translated,) = [doc for doc, _ in installed.documents]
    assert isinstance(translated, dict)
    assert translated["metadata"]["name"] == "linkerd-default-shop"
    assert translated["spec"]["tier"] == "Baseline"
    assert translated["spec"]["rules"][-1] == {"action": "Deny", "sources": [{"type": "Any"}]}
