"""The policy feed: policies from a directory, the admin API and the CRDs reach agents by long poll, revisioned."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
import yaml
from prometheus_client import CollectorRegistry
from sigil_testing.clock import FakeClock
from sigil_testing.controlplane import ControlPlane, ControlPlaneError
from sigil_testing.issuer import attested_agent, issuer_settings, running_issuer
from sigil_testing.kube import KubeApiServer
from sigil_testing.operator import run_kubectl
from sigil_testing.waiting import entered, eventually

from sigil.enforcer.policy import ClusterAuthorizationPolicy, ClusterTier
from sigil.issuer.admin import SocketAdmin
from sigil.issuer.cli import main
from sigil.issuer.client import IssuerClient, PolicyUpdate
from sigil.issuer.edge.listeners import IssuerServer
from sigil.issuer.errors import NotFoundError, PolicyRefusedError
from sigil.issuer.settings import PolicySettings

_GROUP = "/apis/authz.sigil.dev/v1alpha1"


def _policy(name: str, *, port: int = 5432, source_type: str = "ServiceAccount") -> str:
    return f"""\
apiVersion: authz.sigil.dev/v1alpha1
kind: AuthorizationPolicy
metadata:
  name: {name}
  namespace: shop
spec:
  targetRefs:
    - group: ""
      kind: Pod
      selector:
        matchLabels: {{app: db}}
  action: ALLOW
  enforcementLevel: Network
  rules:
    - sources:
        - type: {source_type}
          serviceAccount: {{name: web}}
      networkAttributes:
        ports: [{port}]
"""


def _cluster_policy(name: str, *, tier: str = "Admin") -> dict[str, Any]:
    return {
        "apiVersion": "authz.sigil.dev/v1alpha1",
        "kind": "ClusterAuthorizationPolicy",
        "metadata": {"name": name},
        "spec": {
            "tier": tier,
            "priority": 10,
            "namespaceSelector": {"matchLabels": {"env": "prod"}},
            "rules": [
                {
                    "action": "Deny",
                    "sources": [{"type": "SPIFFE", "spiffe": "spiffe://bad.example/*"}],
                }
            ],
        },
    }


def _names(update: PolicyUpdate) -> list[str]:
    return sorted(p.name for p in update.policies)


def _write(path: Path, text: str) -> None:
    """Write a policy file so that its stamp changes even within one mtime tick (size or inode moves too)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


async def _next(agent: IssuerClient, after: PolicyUpdate) -> PolicyUpdate:
    """The next set after ``after``, failing the test if none comes within a few seconds."""
    return await asyncio.wait_for(agent.policies(after.revision, wait=5), 7)


@pytest.fixture
def registry() -> CollectorRegistry:
    """The registry the server's metrics go to."""
    return CollectorRegistry()


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    """A policy directory holding one good policy."""
    directory = tmp_path / "policies"
    directory.mkdir()
    _write(directory / "shop.yaml", _policy("db-from-web"))
    return directory


@pytest.fixture
async def server(
    tmp_path: Path, policy_dir: Path, registry: CollectorRegistry
) -> AsyncIterator[IssuerServer]:
    """An issuer watching ``policy_dir`` five times a second."""
    policy = PolicySettings(directory=policy_dir, poll_interval=timedelta(seconds=0.2))
    settings = issuer_settings(tmp_path / "data", policy=policy)
    async with running_issuer(settings, registry=registry) as running:
        yield running


async def test_a_directory_change_reaches_a_waiting_agent_within_a_second(
    server: IssuerServer, policy_dir: Path, registry: CollectorRegistry
) -> None:
    """Adding a file bumps the revision, and an agent already waiting gets the new set in under a second."""
    async with attested_agent(server) as agent:
        first = await agent.policies()
        assert _names(first) == ["db-from-web"]
        assert first.revision >= 1
        with entered(server.issuer.policies, "wait") as reached:
            waiting = asyncio.create_task(agent.policies(first.revision, wait=10))
            await asyncio.wait_for(reached.wait(), timeout=10)  # the long poll waits in the server
        started = time.monotonic()
        _write(policy_dir / "more.yaml", _policy("db-from-batch", port=5433))
        update = await asyncio.wait_for(waiting, timeout=5)
    assert time.monotonic() - started < 1.0
    assert update.revision > first.revision
    assert _names(update) == ["db-from-batch", "db-from-web"]
    assert registry.get_sample_value("sigil_policy_revision") == update.revision


async def test_a_broken_file_is_refused_by_field_and_the_last_good_set_stays(
    server: IssuerServer, policy_dir: Path, registry: CollectorRegistry
) -> None:
    """A schema error names file, field and expectation; agents keep the last good version; the refusal counts."""
    async with attested_agent(server) as agent:
        before = await agent.policies()
        with structlog.testing.capture_logs() as logs:
            _write(
                policy_dir / "shop.yaml", _policy("db-from-web", port=6000, source_type="Spiffe")
            )
            await eventually(
                lambda: registry.get_sample_value(
                    "sigil_policy_refusals_total", {"source": "file"}
                ),
                what="the refusal counted",
                within=5,
            )
        after = await agent.policies()
    (refusal,) = [entry["detail"] for entry in logs if entry["event"] == "policy.refused"]
    assert str(policy_dir / "shop.yaml") in refusal
    assert "spec.rules[0].sources[0].type: expected one of" in refusal
    assert "'Spiffe'" in refusal
    assert after.revision == before.revision
    assert after.documents == before.documents
    (rule,) = after.policies[0].rules
    assert rule.ports == frozenset({5432})


async def test_admin_apply_and_delete_through_the_socket_reach_agents(server: IssuerServer) -> None:
    """Policies applied and deleted over the admin socket reach waiting agents; a broken one is refused whole."""
    async with attested_agent(server) as agent, SocketAdmin(server.admin_socket) as admin:
        first = await agent.policies()
        result = await admin.apply_policies("extra.yaml", _policy("db-from-admin", port=7000))
        assert result["applied"] == [
            {
                "kind": "AuthorizationPolicy",
                "namespace": "shop",
                "name": "db-from-admin",
                "in_force": True,
            }
        ]
        applied = await _next(agent, first)
        assert _names(applied) == ["db-from-admin", "db-from-web"]
        with pytest.raises(
            PolicyRefusedError, match=r"extra\.yaml: spec\.rules\[0\]\.sources\[0\]\.type"
        ):
            await admin.apply_policies("extra.yaml", _policy("db-two", source_type="Spiffe"))
        listing = await admin.list_policies()
        assert {(p["name"], p["source"]) for p in listing["policies"]} == {
            ("db-from-admin", "admin"),
            ("db-from-web", str(server.settings.policy.directory / "shop.yaml")),  # type: ignore[operator]
        }
        await admin.delete_policy("AuthorizationPolicy", "shop", "db-from-admin")
        deleted = await _next(agent, applied)
        with pytest.raises(NotFoundError):
            await admin.delete_policy("AuthorizationPolicy", "shop", "db-from-admin")
    assert _names(deleted) == ["db-from-web"]
    assert deleted.revision > applied.revision


async def test_admin_applies_made_at_once_are_all_in_force(server: IssuerServer) -> None:
    """Eight applies over eight admin connections at once: each answers in force, and the set holds all eight."""
    names = [f"db-at-once-{n}" for n in range(8)]

    async def apply(name: str, port: int) -> list[dict[str, Any]]:
        async with SocketAdmin(server.admin_socket) as admin:
            result = await admin.apply_policies(f"{name}.yaml", _policy(name, port=port))
            return list(result["applied"])

    async with attested_agent(server) as agent:
        answers = await asyncio.gather(*(apply(name, 7000 + n) for n, name in enumerate(names)))
        assert [a[0]["in_force"] for a in answers] == [True] * 8
        update = await agent.policies()
    assert _names(update) == sorted([*names, "db-from-web"])


async def test_the_policy_cli_verbs_go_through_the_admin_socket(
    server: IssuerServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``sigil-server policy apply -f``, ``list`` and ``delete`` work against the running server."""
    file = tmp_path / "cli.yaml"
    file.write_text(_policy("db-from-cli"))
    base = ["--data-dir", str(server.settings.data_dir), "--admin-socket", str(server.admin_socket)]
    assert await asyncio.to_thread(main, [*base, "policy", "apply", "-f", str(file)]) == 0
    assert "AuthorizationPolicy shop/db-from-cli applied" in capsys.readouterr().out
    assert await asyncio.to_thread(main, [*base, "policy", "list"]) == 0
    assert "shop/db-from-cli" in capsys.readouterr().out
    assert await asyncio.to_thread(main, [*base, "policy", "delete", "ap", "shop/db-from-cli"]) == 0
    assert "AuthorizationPolicy shop/db-from-cli deleted" in capsys.readouterr().out
    assert await asyncio.to_thread(main, [*base, "policy", "list"]) == 0
    assert "db-from-cli" not in capsys.readouterr().out


def _labelled_namespace(plane: ControlPlane, prefix: str, labels: dict[str, str]) -> str:
    """Create a fresh namespace carrying ``labels`` and return its name."""
    name = f"{prefix}-{secrets.token_hex(4)}"
    body = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": labels},
    }
    plane.request("POST", "/api/v1/namespaces", body)
    return name


def _replace(plane: ControlPlane, path: str, body: dict[str, Any], query: str = "") -> None:
    """PUT ``body`` over the object at ``path`` as of its current version, again if the issuer's status write won."""
    for _ in range(20):
        current = plane.request("GET", path)
        versioned = copy.deepcopy(body)
        versioned["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        try:
            plane.request("PUT", path + query, versioned)
        except ControlPlaneError as err:
            if "HTTP 409" not in str(err):
                raise
        else:
            return
    raise AssertionError(f"PUT {path}: conflicts 20 times in a row")


async def _until(
    agent: IssuerClient, update: PolicyUpdate, done: Callable[[PolicyUpdate], bool]
) -> PolicyUpdate:
    """The first set from ``update`` on for which ``done`` holds, failing the test after 10 seconds."""
    async with asyncio.timeout(10):
        while not done(update):
            update = await _next(agent, update)
    return update


def _cluster_policies(update: PolicyUpdate, name: str) -> list[ClusterAuthorizationPolicy]:
    return [
        p for p in update.policies if isinstance(p, ClusterAuthorizationPolicy) and p.name == name
    ]


@pytest.mark.kube
async def test_crds_and_namespace_labels_come_from_the_cluster_watch(
    policy_crds: ControlPlane, tmp_path: Path
) -> None:
    """Cluster policies and namespace labels arrive by watch from the real API server; a version the schema lets
    through but Sigil refuses is refused by field, its last good version kept; a deletion removes it."""
    plane = policy_crds
    shop = _labelled_namespace(plane, "shop", {"env": "prod"})
    name = f"quarantine-{secrets.token_hex(3)}"
    path = f"{_GROUP}/clusterauthorizationpolicies/{name}"
    settings = issuer_settings(
        tmp_path / "data",
        kubeconfig=plane.kubeconfig,
        policy=PolicySettings(poll_interval=timedelta(seconds=0.2)),
    )
    async with running_issuer(settings) as server, attested_agent(server) as agent:
        update = await _until(agent, await agent.policies(), lambda u: shop in u.namespaces)
        assert update.namespaces[shop] == {"kubernetes.io/metadata.name": shop, "env": "prod"}
        good = _cluster_policy(name)
        plane.request("POST", f"{_GROUP}/clusterauthorizationpolicies", good)
        update = await _until(agent, update, lambda u: bool(_cluster_policies(u, name)))
        # The schema's pattern lets a dot segment through; SPIFFE IDs forbid it, which only Sigil checks.
        broken = copy.deepcopy(good)
        broken["spec"]["rules"][0]["sources"][0]["spiffe"] = "spiffe://bad.example/ops/../admin"
        with structlog.testing.capture_logs() as logs:
            await asyncio.to_thread(_replace, plane, path, broken)
            # a change after the refusal, to know the refusal was handled
            billing = await asyncio.to_thread(_labelled_namespace, plane, "billing", {})
            update = await _until(agent, update, lambda u: billing in u.namespaces)
        refusals = [e["detail"] for e in logs if e["event"] == "policy.refused"]
        assert any(
            r.startswith(
                f"kubernetes ClusterAuthorizationPolicy {name}: spec.rules[0].sources[0].spiffe: "
                "expected a SPIFFE ID"
            )
            for r in refusals
        ), refusals
        (kept,) = _cluster_policies(update, name)
        assert kept.tier is ClusterTier.ADMIN
        (document,) = [d for d in update.documents if d["metadata"]["name"] == name]
        assert document["spec"]["rules"][0]["sources"][0]["spiffe"] == "spiffe://bad.example/*"
        await asyncio.to_thread(plane.request, "DELETE", path)
        update = await _until(agent, update, lambda u: not _cluster_policies(u, name))


def _monitoring_allow(rule: dict[str, Any]) -> dict[str, Any]:
    """An Admin-tier policy letting one rule through to every prod namespace."""
    return {
        "apiVersion": "authz.sigil.dev/v1alpha1",
        "kind": "ClusterAuthorizationPolicy",
        "metadata": {"name": "monitoring"},
        "spec": {
            "tier": "Admin",
            "priority": 10,
            "namespaceSelector": {"matchLabels": {"env": "prod"}},
            "rules": [{"action": "Allow", **rule}],
        },
    }


@pytest.mark.kube
async def test_a_misspelled_criterion_never_reaches_the_issuer_from_the_real_api_server(
    policy_crds: ControlPlane, tmp_path: Path
) -> None:
    """On the real API server a misspelled criterion never widens a watched policy: kubectl refuses it, a lax
    client's rule pruned to ``{}`` is refused by the CRD's CEL rule, and the issuer keeps the good rule in force."""
    plane = policy_crds
    name = f"monitoring-{secrets.token_hex(3)}"
    prometheus = {
        "sources": [
            {"type": "SPIFFE", "spiffe": "spiffe://example.org/ns/monitoring/sa/prometheus"}
        ]
    }
    good = _monitoring_allow(prometheus) | {"metadata": {"name": name}}
    settings = issuer_settings(
        tmp_path / "data",
        kubeconfig=plane.kubeconfig,
        policy=PolicySettings(poll_interval=timedelta(seconds=0.2)),
    )
    async with running_issuer(settings) as server, attested_agent(server) as agent:
        plane.request("POST", f"{_GROUP}/clusterauthorizationpolicies", good)
        update = await _until(
            agent, await agent.policies(), lambda u: bool(_cluster_policies(u, name))
        )
        (in_force,) = [d for d in update.documents if d["metadata"]["name"] == name]
        typo = _monitoring_allow({"soruces": prometheus["sources"]}) | {"metadata": {"name": name}}
        with structlog.testing.capture_logs() as logs:
            applied = await asyncio.to_thread(
                run_kubectl, plane, "apply", "-f", "-", stdin=yaml.safe_dump(typo)
            )
            assert applied.returncode != 0
            assert 'unknown field "spec.rules[0].soruces"' in applied.stderr
            path = f"{_GROUP}/clusterauthorizationpolicies/{name}"
            with pytest.raises(ControlPlaneError, match="a rule must name sources"):
                await asyncio.to_thread(_replace, plane, path, typo, "?fieldValidation=Ignore")
            # a change after both attempts, to know the issuer has seen everything before it
            marker = await asyncio.to_thread(_labelled_namespace, plane, "after", {})
            update = await _until(agent, update, lambda u: marker in u.namespaces)
        assert [d for d in update.documents if d["metadata"]["name"] == name] == [in_force]
        assert [e for e in logs if e["event"] == "policy.refused" and name in e["detail"]] == []


async def test_a_crd_with_a_misspelled_criterion_is_refused_never_widened(
    kube: KubeApiServer, clock: FakeClock, tmp_path: Path
) -> None:
    """A CR whose rule carries a misspelled field, or arrives with no criterion left, is refused by field; the last
    good rule stays. On the stand-in: a real API server never delivers either (it prunes or refuses unknown fields
    under the CRDs' structural schema, and its CEL rule refuses an empty rule), so only a server without that schema
    can show the issuer's own refusal through the CRD watch."""
    prometheus = {
        "sources": [
            {"type": "SPIFFE", "spiffe": "spiffe://example.org/ns/monitoring/sa/prometheus"}
        ]
    }
    settings = issuer_settings(
        tmp_path / "data",
        kubeconfig=kube.write_kubeconfig(tmp_path / "kubeconfig"),
        policy=PolicySettings(poll_interval=timedelta(seconds=0.2)),
    )
    async with (
        running_issuer(settings, kube_clock=clock.seconds) as server,
        attested_agent(server) as agent,
    ):
        update = await agent.policies()
        kube.apply_custom(_monitoring_allow(prometheus))
        update = await _next(agent, update)
        assert _names(update) == ["monitoring"]
        good_documents = update.documents
        refusals: list[str] = []
        for number, broken in enumerate(({"soruces": prometheus["sources"]}, {})):
            with structlog.testing.capture_logs() as logs:
                kube.apply_custom(_monitoring_allow(broken))
                kube.add_namespace(
                    f"after-{number}"
                )  # a change after the refusal, to know it was handled
                async with asyncio.timeout(10):
                    while f"after-{number}" not in update.namespaces:
                        update = await _next(agent, update)
            refusals += [e["detail"] for e in logs if e["event"] == "policy.refused"]
    where = "kubernetes ClusterAuthorizationPolicy monitoring: spec.rules[0]"
    assert refusals[0].startswith(f"{where}.soruces: unknown field")
    assert refusals[1].startswith(f"{where}: expected sources, notSources or networkAttributes")
    assert len(refusals) == 2
    assert update.documents == good_documents
    (kept,) = update.policies
    assert isinstance(kept, ClusterAuthorizationPolicy)
    (rule,) = kept.rules
    assert rule.sources is not None


async def test_admin_apply_refuses_a_misspelled_field_by_name(server: IssuerServer) -> None:
    """``policy apply`` refuses a document with a misspelled field, naming the field, and applies nothing."""
    misspelled = _policy("db-typo").replace("    - sources:", "    - soruces:")
    async with SocketAdmin(server.admin_socket) as admin:
        with pytest.raises(
            PolicyRefusedError, match=r"typo\.yaml: spec\.rules\[0\]\.soruces: unknown field"
        ):
            await admin.apply_policies("typo.yaml", misspelled)
        listing = await admin.list_policies()
    assert [p["name"] for p in listing["policies"]] == ["db-from-web"]


@pytest.mark.postgres
async def test_two_replicas_agree_on_the_revision(
    tmp_path: Path, policy_dir: Path, postgres_url: str
) -> None:
    """Replicas on one PostgreSQL number the same set alike, and an admin change on one reaches the other's agents."""
    policy = PolicySettings(directory=policy_dir, poll_interval=timedelta(seconds=0.2))
    url = postgres_url
    settings_a = issuer_settings(tmp_path / "a", database_url=url, policy=policy)
    async with running_issuer(settings_a) as a, attested_agent(a) as on_a:
        # B keeps its keys on disk beside A's: enough for policies, which need no signing key.
        settings_b = issuer_settings(
            tmp_path / "b",
            database_url=url,
            policy=policy,
            ca_options={"key_dir": tmp_path / "a" / "keys"},
        )
        async with running_issuer(settings_b) as b, attested_agent(b) as on_b:
            from_a, from_b = await on_a.policies(), await on_b.policies()
            assert (from_a.revision, from_a.digest) == (from_b.revision, from_b.digest)
            async with SocketAdmin(a.admin_socket) as admin:
                await admin.apply_policies("x.yaml", _policy("db-from-admin"))
            changed_a = await _next(on_a, from_a)
            changed_b = await _next(on_b, from_b)
    assert changed_a.revision == changed_b.revision > from_a.revision
    assert changed_a.digest == changed_b.digest
    assert _names(changed_b) == ["db-from-admin", "db-from-web"]


async def test_the_body_agents_get_is_the_set_in_force(server: IssuerServer) -> None:
    """The feed's JSON body, written once per revision from canonical text, decodes to the set in force."""
    feed = server.issuer.policies
    async with SocketAdmin(server.admin_socket) as admin:
        await admin.apply_policies("extra.yaml", _policy("db-from-batch", port=5433))
    body = await feed.wait_encoded(after_revision=None, longest=0)
    assert json.loads(body) == feed.current()
    assert await feed.wait_encoded(after_revision=None, longest=0) is body  # encoded once
    assert [p["metadata"]["name"] for p in json.loads(body)["policies"]] == [
        "db-from-web",
        "db-from-batch",
    ]
    revision = feed.revision
    # The next revision reuses the origins the last one encoded: it still decodes to the set in force.
    async with SocketAdmin(server.admin_socket) as admin:
        await admin.apply_policies("extra.yaml", _policy("db-from-batch", port=5434))
    moved = await feed.wait_encoded(after_revision=revision, longest=5)
    assert json.loads(moved) == feed.current()
    assert (
        json.loads(moved)["origins"] != json.loads(body)["origins"]
    )  # the admin policy's own revision moved
