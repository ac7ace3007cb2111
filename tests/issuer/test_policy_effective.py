"""``sigil-server policy effective``: a running server's view of one pod, with each policy's source."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sigil_testing.controlplane import ControlPlane
from sigil_testing.issuer import issuer_settings, running_issuer
from sigil_testing.operator import run_kubectl
from sigil_testing.realkube import fresh_namespace
from sigil_testing.waiting import eventually

from sigil.ca.errors import SigilError
from sigil.issuer.admin.client import SocketAdmin
from sigil.issuer.cli import main
from sigil.issuer.edge.listeners import IssuerServer
from sigil.issuer.settings import PolicySettings


def _allow_web(namespace: str, name: str, *, port: int = 5432) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "authz.sigil.dev/v1alpha1",
            "kind": "AuthorizationPolicy",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "targetRefs": [
                    {"group": "", "kind": "Pod", "selector": {"matchLabels": {"app": "db"}}}
                ],
                "action": "ALLOW",
                "enforcementLevel": "Network",
                "rules": [
                    {
                        "sources": [{"type": "ServiceAccount", "serviceAccount": {"name": "web"}}],
                        "networkAttributes": {"ports": [port]},
                    }
                ],
            },
        }
    )


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[IssuerServer]:
    """An issuer outside Kubernetes whose policy directory holds shop's db-from-web (two documents)."""
    directory = tmp_path / "policies"
    directory.mkdir()
    (directory / "shop.yaml").write_text(
        _allow_web("shop", "other-app").replace("app: db", "app: other")
        + "---\n"
        + _allow_web("shop", "db-from-web")
    )
    policy = PolicySettings(directory=directory, poll_interval=timedelta(seconds=0.2))
    async with running_issuer(issuer_settings(tmp_path / "data", policy=policy)) as running:
        yield running


def _view(out: str) -> Any:
    """The JSON view printed: the server runs in this process and may log to the same stdout around it."""
    return json.JSONDecoder().raw_decode(out, out.index('{\n  "schema_version"'))[0]


def _base(server: IssuerServer) -> list[str]:
    return ["--data-dir", str(server.settings.data_dir), "--admin-socket", str(server.admin_socket)]


async def test_outside_kubernetes_the_labels_are_given(
    server: IssuerServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """With ``--labels`` the server shows the pod's rules, their file and document, and who may connect."""
    args = [*_base(server), "policy", "effective", "--pod", "shop/db-0", "--labels", "app=db"]
    assert await asyncio.to_thread(main, [*args, "--output", "json"]) == 0
    view = _view(capsys.readouterr().out)
    assert view["pod"] == {"namespace": "shop", "name": "db-0", "labels_from": "request"}
    assert view["revision"] == server.issuer.policies.revision
    (policy,) = view["policies"]
    assert (policy["name"], policy["source"]["kind"], policy["source"]["document"]) == (
        "db-from-web",
        "file",
        1,
    )
    assert await asyncio.to_thread(main, [*args, "--port", "5432"]) == 0
    text = capsys.readouterr().out
    assert "AuthorizationPolicy shop/db-from-web (ALLOW)" in text
    assert "shop.yaml, document 1 (revision " in text
    assert (
        "serviceAccount shop/web\n    port 5432        allowed by namespace shop/db-from-web rule 0"
        in text
    )


async def test_the_default_travels_to_the_server_and_back(
    server: IssuerServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--default audit`` is the default the server computes the view under; an unknown one is refused."""
    args = [*_base(server), "policy", "effective", "--pod", "other/db-0", "--labels", "app=db"]
    assert await asyncio.to_thread(main, [*args, "--default", "audit", "--output", "json"]) == 0
    view = _view(capsys.readouterr().out)
    assert view["target"]["default"] == "audit"
    assert {verdict["decision"] for row in view["access"] for verdict in row["verdicts"]} == {
        "allowed"
    }
    assert await asyncio.to_thread(main, [*args, "--default", "authenticated"]) == 0
    text = capsys.readouterr().out
    assert "a peer without a valid SVID\n    other ports      denied by the default" in text


async def test_the_admin_endpoint_refuses_a_default_it_does_not_know(server: IssuerServer) -> None:
    """``GET /v1/admin/policies/effective?default=...`` names the defaults it takes when given another."""
    async with SocketAdmin(server.admin_socket) as admin:
        view = await admin.effective_policy("shop/db-0", {"app": "db"}, None, "local-authenticated")
        assert view["target"]["default"] == "local-authenticated"
        with pytest.raises(SigilError, match="local-authenticated") as refused:
            await admin.effective_policy("shop/db-0", {"app": "db"}, None, "sometimes")
    assert "'sometimes' is not one of allow, deny, authenticated" in str(refused.value)


async def test_without_a_pod_watch_labels_are_required(
    server: IssuerServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Outside Kubernetes, asking by pod name alone is refused with what to do instead."""
    args = [*_base(server), "policy", "effective", "--pod", "shop/db-0"]
    assert await asyncio.to_thread(main, args) != 0
    assert "give the pod's labels" in capsys.readouterr().err
    assert (
        await asyncio.to_thread(
            main, [*_base(server), "policy", "effective", "--pod", "db-0", "--labels", "a=b"]
        )
        != 0
    )
    assert "NAMESPACE/NAME" in capsys.readouterr().err


@pytest.mark.kube
async def test_in_kubernetes_the_pod_watch_gives_the_labels_and_the_crd_its_generation(
    policy_crds: ControlPlane, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The server reads the pod's labels from its watch and names the CRD object and generation of each policy."""
    namespace = fresh_namespace(policy_crds)
    namespace.pod("db-0", node=None, service_account="db", labels={"app": "db"})
    settings = issuer_settings(
        tmp_path / "data",
        kubeconfig=policy_crds.kubeconfig,
        policy=PolicySettings(poll_interval=timedelta(seconds=0.2)),
    )
    async with running_issuer(settings) as server:
        for port in (5432, 6432):  # applied twice: generation 2
            applied = await asyncio.to_thread(
                run_kubectl,
                policy_crds,
                "apply",
                "-f",
                "-",
                stdin=_allow_web(namespace.name, "db-from-web", port=port),
            )
            assert applied.returncode == 0, applied.stderr
        key = ("AuthorizationPolicy", namespace.name, "db-from-web")
        await eventually(
            lambda: (
                (origin := server.issuer.policies.origins().get(key)) and origin.generation == 2
            ),
            what="generation 2 in force",
        )
        await eventually(
            lambda: server.issuer.kube and server.issuer.kube.pods.pod(namespace.name, "db-0"),
            what="the pod watched",
        )
        args = [
            *_base(server),
            "policy",
            "effective",
            "--pod",
            f"{namespace.name}/db-0",
            "--output",
            "json",
        ]
        assert await asyncio.to_thread(main, args) == 0
    view = _view(capsys.readouterr().out)
    assert view["pod"]["labels_from"] == "pod watch"
    assert view["target"]["labels"] == {"app": "db"}
    (policy,) = view["policies"]
    assert {k: policy["source"][k] for k in ("kind", "name", "generation")} == {
        "kind": "crd",
        "name": f"{namespace.name}/db-from-web",
        "generation": 2,
    }
    assert view["ports"] == [6432, "other"]
