"""Publishing the trust bundle to a Kubernetes ConfigMap, for consumers that do not speak the Workload API.

Like SPIRE's k8s_configmap BundlePublisher: the server rewrites ``bundle.pem`` and ``bundle.spiffe`` (the SPIFFE
bundle JSON) whenever the bundle changes. The ConfigMap comes with the manifests, so the server's RBAC needs no
``create``; a missing ConfigMap is logged and retried, never created. Every replica publishes the same content, so
two writers agree.

Consumers trust whatever the ConfigMap holds, so the publisher also reads it back every ``resync`` seconds and
rewrites it when it differs from the bundle: an edit by anyone else (a stray ``kubectl edit``, a writer with more
RBAC than it should have) lasts until the next resync, not until the next rotation. Each write is conditional on the
resourceVersion it read; when someone wrote in between (409 Conflict), it reads again and decides again.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from sigil.ca.bundle import TrustBundle
from sigil.ca.errors import SigilError
from sigil.ca.service import CertificateAuthority
from sigil.issuer.kube.api import KubeApi

__all__ = ["publish_bundle_configmap"]

_RETRY = 5.0
_RESYNC = 60.0

_log = structlog.get_logger(__name__)


async def publish_bundle_configmap(
    ca: CertificateAuthority, api: KubeApi, *, namespace: str, name: str, resync: float = _RESYNC
) -> None:
    """Keep ConfigMap ``namespace/name`` holding the current bundle until cancelled."""
    published = -1
    while True:
        bundle = ca.bundle()
        try:
            done = await _publish(api, bundle, namespace=namespace, name=name)
        except SigilError as err:
            _log.warning("bundle_configmap.failed", namespace=namespace, name=name, detail=str(err))
            done = False
        if not done:
            await asyncio.sleep(_RETRY)
            continue
        if bundle.sequence != published:
            published = bundle.sequence
            _log.info(
                "bundle_configmap.published", namespace=namespace, name=name, sequence=published
            )
        # Wake on the next bundle change, or after `resync` to check that nobody else rewrote the ConfigMap.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(resync):
                await ca.wait_for_bundle(published)


async def _publish(api: KubeApi, bundle: TrustBundle, *, namespace: str, name: str) -> bool:
    """Make the ConfigMap hold ``bundle``; False when it does not exist. Raises when the API cannot answer."""
    wanted = {"bundle.pem": bundle.to_pem().decode(), "bundle.spiffe": bundle.to_json().decode()}
    while True:
        found = await api.read_config_map(namespace, name)
        if found is None:
            _log.warning("bundle_configmap.missing", namespace=namespace, name=name)
            return False
        held = found.get("data") or {}
        if all(held.get(key) == value for key, value in wanted.items()):
            return True
        version = found.get("metadata", {}).get("resourceVersion", "")
        outcome = await api.patch_config_map_data(namespace, name, wanted, resource_version=version)
        if outcome == "written":
            if any(held.get(key) for key in wanted):  # not the manifests' empty placeholders
                _log.info("bundle_configmap.rewritten", namespace=namespace, name=name)
            return True
        if outcome == "missing":
            _log.warning("bundle_configmap.missing", namespace=namespace, name=name)
            return False
        # Someone wrote between our read and our write: read what they wrote and decide again.
        _log.info("bundle_configmap.conflict", namespace=namespace, name=name, read=version)
