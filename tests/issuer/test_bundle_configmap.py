"""The server publishes its trust bundle to a ConfigMap and rewrites it on every bundle change."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sigil_testing.issuer import issuer_settings, running_issuer
from sigil_testing.kube import FakeClock, KubeApiServer

from sigil.ca.authority import AuthorityKind
from sigil.ca.bundle import TrustBundle
from sigil.ca.spiffe_id import TrustDomain
from sigil.issuer.bundle_configmap import resolve_namespace
from sigil.issuer.server_settings import KubeSettings


async def _published(kube: KubeApiServer, wanted: bytes) -> dict[str, str]:
    async with asyncio.timeout(3):
        while True:
            config_map = kube.config_map("sigil-system", "sigil-bundle")
            assert config_map is not None
            if config_map["data"].get("bundle.pem", "").encode() == wanted:
                return dict(config_map["data"])
            await asyncio.sleep(0.02)


async def test_bundle_reaches_the_configmap_and_follows_rotation(
    kube: KubeApiServer, clock: FakeClock, tmp_path: Path
) -> None:
    """Both bundle forms land in the ConfigMap, and a newly prepared authority shows up there within seconds."""
    kube.add_config_map("sigil-system", "sigil-bundle", {"bundle.pem": "", "bundle.spiffe": ""})
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
    settings = issuer_settings(
        tmp_path / "data",
        kubeconfig=kubeconfig,
        kubernetes=KubeSettings(
            kubeconfig=kubeconfig,
            cluster="test",
            bundle_configmap="sigil-bundle",
            bundle_configmap_namespace="sigil-system",
        ),
    )
    async with running_issuer(settings, kube_clock=clock) as server:
        ca = server.issuer.ca
        data = await _published(kube, ca.bundle().to_pem())
        spiffe = TrustBundle.parse_jwks(TrustDomain("example.org"), data["bundle.spiffe"])
        assert spiffe.same_content(ca.bundle())
        await ca.prepare(AuthorityKind.X509)
        data = await _published(kube, ca.bundle().to_pem())
        assert (
            len(
                TrustBundle.parse_pem(
                    TrustDomain("example.org"), data["bundle.pem"].encode()
                ).x509_authorities
            )
            == 2
        )


def test_namespace_comes_from_config_then_env_then_the_pod(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The publishing namespace is the configured one, else $SIGIL_POD_NAMESPACE, else the pod's own file."""
    pod_file = tmp_path / "namespace"
    pod_file.write_text("from-file\n")
    monkeypatch.setenv("SIGIL_POD_NAMESPACE", "from-env")
    assert resolve_namespace("configured", namespace_file=pod_file) == "configured"
    assert resolve_namespace(None, namespace_file=pod_file) == "from-env"
    monkeypatch.delenv("SIGIL_POD_NAMESPACE")
    assert resolve_namespace(None, namespace_file=pod_file) == "from-file"
    assert resolve_namespace(None, namespace_file=tmp_path / "missing") is None
