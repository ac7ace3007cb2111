"""Istio's policy objects in a real API server, followed by the real issuer and translated into its policy feed.

The Istio CRD here is a minimal one of our own (group, kind and versions as Istio's, spec unvalidated): the
issuer's discovery, list and watch run against the real kube-apiserver. The dialect is the toy of
``tests/enforcer/toy_dialect.py`` registered under Istio's group: the real translator lives on its own branch."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from enforcer.linkerd_docs import server as server_doc
from enforcer.toy_dialect import toy
from sigil_testing.controlplane import ControlPlane
from sigil_testing.issuer import issuer_settings, running_issuer
from sigil_testing.operator import run_kubectl
from sigil_testing.realkube import Namespace
from sigil_testing.waiting import eventually

from enforcer import toy_dialect
from sigil.enforcer.policy.dialects import base
from sigil.issuer.settings import PolicySettings

pytestmark = pytest.mark.kube


def _crd(group: str, kind: str, plural: str, versions: tuple[str, ...]) -> dict[str, Any]:
    """A minimal CRD of our own for a mesh's kind: its group, kind, plural and versions (the first stored), the
    spec unvalidated."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": name,
                    "served": True,
                    "storage": name == versions[0],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
                for name in versions
            ],
        },
    }


_ISTIO_CRD = _crd(
    "security.istio.io", "AuthorizationPolicy", "authorizationpolicies", ("v1", "v1beta1")
)
_LINKERD_SERVER_CRD = _crd("policy.linkerd.io", "Server", "servers", ("v1beta3",))


@pytest.fixture
def _toy_dialect(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(
        base._DIALECT_MODULES, "security.istio.io", ("istio", "enforcer.toy_dialect")
    )
    toy_dialect.BATCHES.clear()


@pytest.mark.usefixtures("_toy_dialect")
async def test_the_issuer_follows_and_translates_istio_objects(
    policy_crds: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    """An Istio AuthorizationPolicy applied to the cluster reaches the feed as a Sigil policy, changes with it, and
    leaves when it is deleted."""
    applied = await asyncio.to_thread(
        run_kubectl, policy_crds, "apply", "-f", "-", stdin=yaml.safe_dump(_ISTIO_CRD)
    )
    assert applied.returncode == 0, applied.stderr
    await asyncio.to_thread(
        run_kubectl,
        policy_crds,
        "wait",
        "--for=condition=Established",
        "crd/authorizationpolicies.security.istio.io",
    )
    settings = issuer_settings(
        tmp_path / "data",
        kubeconfig=policy_crds.kubeconfig,
        policy=PolicySettings(poll_interval=timedelta(seconds=0.2)),
    )
    document = toy("no-partner", namespace, "DENY", "spiffe://partner.org/x")
    async with running_issuer(settings) as server:

        def names() -> set[str]:
            return {row["name"] for row in server.issuer.policies.listing()}

        def present(name: str) -> bool:
            return name in names()

        try:
            applied = await asyncio.to_thread(
                run_kubectl, policy_crds, "apply", "-f", "-", stdin=yaml.safe_dump(document)
            )
            assert applied.returncode == 0, applied.stderr
            await eventually(lambda: present("istio-no-partner"), what="the translated policy")
            (row,) = [
                r for r in server.issuer.policies.listing() if r["name"] == "istio-no-partner"
            ]
            assert row["source"] == "kubernetes:security.istio.io"
        finally:
            deleted = await asyncio.to_thread(
                run_kubectl,
                policy_crds,
                "delete",
                "-n",
                namespace,
                "authorizationpolicies.security.istio.io",
                "no-partner",
            )
        assert deleted.returncode == 0, deleted.stderr
        await eventually(lambda: not present("istio-no-partner"), what="the policy gone")


async def _kubectl(plane: ControlPlane, *args: str, stdin: str | None = None) -> None:
    done = await asyncio.to_thread(run_kubectl, plane, *args, stdin=stdin)
    assert done.returncode == 0, done.stderr


@pytest.mark.usefixtures("_toy_dialect")
async def test_istios_crd_installed_after_the_issuer_started_is_followed_and_its_removal_too(
    policy_crds: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    """The issuer starts before Istio is installed; its CRD applied later is found by the next discovery and
    its objects translated, with no restart. Deleting the CRD (which deletes its objects) takes the
    translations out of the feed."""
    crd = "crd/authorizationpolicies.security.istio.io"
    await _kubectl(policy_crds, "delete", "--ignore-not-found", "--wait", crd)
    settings = issuer_settings(
        tmp_path / "data",
        kubeconfig=policy_crds.kubeconfig,
        policy=PolicySettings(
            poll_interval=timedelta(seconds=0.2), crd_discovery_interval=timedelta(seconds=0.3)
        ),
    )
    document = toy("later", namespace, "DENY", "spiffe://partner.org/x")
    async with running_issuer(settings) as server:

        def present() -> bool:
            return "istio-later" in {row["name"] for row in server.issuer.policies.listing()}

        try:
            await _kubectl(policy_crds, "apply", "-f", "-", stdin=yaml.safe_dump(_ISTIO_CRD))
            await _kubectl(policy_crds, "wait", "--for=condition=Established", crd)
            await _kubectl(policy_crds, "apply", "-f", "-", stdin=yaml.safe_dump(document))
            await eventually(present, what="the policy of a CRD installed after start")
        finally:
            await _kubectl(policy_crds, "delete", "--ignore-not-found", "--wait", crd)
        await eventually(lambda: not present(), what="the policy gone with its CRD")


async def test_a_namespaces_linkerd_default_policy_follows_its_annotation(
    policy_crds: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    """With Linkerd's kinds served (no Linkerd policy in the cluster at all), a namespace annotated
    ``config.linkerd.io/default-inbound-policy: deny`` gets its Baseline policy in the feed, and loses it when the
    annotation goes; the real Linkerd translator does the work."""
    crd = "crd/servers.policy.linkerd.io"
    await _kubectl(policy_crds, "apply", "-f", "-", stdin=yaml.safe_dump(_LINKERD_SERVER_CRD))
    await _kubectl(policy_crds, "wait", "--for=condition=Established", crd)
    settings = issuer_settings(
        tmp_path / "data",
        kubeconfig=policy_crds.kubeconfig,
        policy=PolicySettings(poll_interval=timedelta(seconds=0.2)),
    )
    annotation = "config.linkerd.io/default-inbound-policy"
    baseline = f"linkerd-default-{namespace}"
    try:
        async with running_issuer(settings) as server:

            def present() -> bool:
                return baseline in {row["name"] for row in server.issuer.policies.listing()}

            await _kubectl(policy_crds, "annotate", "namespace", namespace, f"{annotation}=deny")
            await eventually(present, what="the namespace's Baseline policy")
            (row,) = [r for r in server.issuer.policies.listing() if r["name"] == baseline]
            assert row["source"] == "kubernetes:policy.linkerd.io"
            await _kubectl(policy_crds, "annotate", "namespace", namespace, f"{annotation}-")
            await eventually(lambda: not present(), what="the Baseline policy gone")
    finally:
        await _kubectl(policy_crds, "delete", "--ignore-not-found", "--wait", crd)


async def test_a_linkerd_servers_named_port_resolves_through_the_clusters_pods(
    policy_crds: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    """A Server naming its port (``port: http``) is translated with the number the selected pods give that name,
    read from the issuer's pod cache; a new pod naming it otherwise adds its number."""
    crd = "crd/servers.policy.linkerd.io"
    await _kubectl(policy_crds, "apply", "-f", "-", stdin=yaml.safe_dump(_LINKERD_SERVER_CRD))
    await _kubectl(policy_crds, "wait", "--for=condition=Established", crd)
    pods = Namespace(policy_crds, namespace)
    await asyncio.to_thread(
        pods.pod, "web-1", node=None, labels={"app": "web"}, ports={"http": 8080}
    )
    await asyncio.to_thread(pods.pod, "db-1", node=None, labels={"app": "db"}, ports={"http": 7000})
    settings = issuer_settings(
        tmp_path / "data",
        kubeconfig=policy_crds.kubeconfig,
        policy=PolicySettings(poll_interval=timedelta(seconds=0.2)),
    )
    try:
        async with running_issuer(settings) as server:

            def ports() -> list[int] | None:
                for policy in server.issuer.policies.current()["policies"]:
                    if policy["metadata"]["name"] == "linkerd-server-web":
                        return sorted(
                            port for ref in policy["spec"]["targetRefs"] for port in ref["ports"]
                        )
                return None

            web = server_doc("web", "http", namespace=namespace, match={"app": "web"})
            await _kubectl(policy_crds, "apply", "-f", "-", stdin=yaml.safe_dump(web))
            await eventually(
                lambda: ports() == [8080], what="the Server on the web pods' port 8080"
            )
            await asyncio.to_thread(
                pods.pod, "web-2", node=None, labels={"app": "web"}, ports={"http": 8081}
            )
            await eventually(lambda: ports() == [8080, 8081], what="the new pod's number added")
    finally:
        await _kubectl(policy_crds, "delete", "--ignore-not-found", "--wait", crd)
