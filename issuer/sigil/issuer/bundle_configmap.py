"""Publishing the trust bundle to a Kubernetes ConfigMap, for consumers that do not speak the Workload API.

Like SPIRE's k8s_configmap BundlePublisher: the server rewrites ``bundle.pem`` and ``bundle.spiffe`` (the SPIFFE
bundle JSON) whenever the bundle changes. The ConfigMap comes with the manifests, so the server's RBAC needs no
``create``; a missing ConfigMap is logged and retried, never created. Every replica publishes the same content, so
two writers agree.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import structlog

from sigil.ca.errors import SigilError
from sigil.issuer.kube.api import KubeApi
from sigil.issuer.state import Issuer

__all__ = ["IN_CLUSTER_NAMESPACE_FILE", "publish_bundle_configmap", "resolve_namespace"]

IN_CLUSTER_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
_RETRY = 5.0

log = structlog.get_logger(__name__)


def resolve_namespace(
    configured: str | None, *, namespace_file: Path = IN_CLUSTER_NAMESPACE_FILE
) -> str | None:
    """The namespace to publish into: configured, else ``$SIGIL_POD_NAMESPACE``, else the pod's own."""
    if configured:
        return configured
    from_env = os.environ.get("SIGIL_POD_NAMESPACE")
    if from_env:
        return from_env
    try:
        return namespace_file.read_text().strip() or None
    except OSError:
        return None


async def publish_bundle_configmap(
    issuer: Issuer, api: KubeApi, *, namespace: str, name: str
) -> None:
    """Keep ConfigMap ``namespace/name`` holding the current bundle until cancelled."""
    published = -1
    while True:
        bundle = issuer.ca.bundle()
        if bundle.sequence != published:
            data = {
                "bundle.pem": bundle.to_pem().decode(),
                "bundle.spiffe": bundle.to_json().decode(),
            }
            try:
                found = await api.patch_config_map_data(namespace, name, data)
            except SigilError as err:
                log.warning(
                    "bundle_configmap.failed", namespace=namespace, name=name, detail=str(err)
                )
                await asyncio.sleep(_RETRY)
                continue
            if not found:
                log.warning("bundle_configmap.missing", namespace=namespace, name=name)
                await asyncio.sleep(_RETRY)
                continue
            published = bundle.sequence
            log.info(
                "bundle_configmap.published", namespace=namespace, name=name, sequence=published
            )
        await issuer.ca.wait_for_bundle(published)
