"""The real issuer wired to a real control plane, as an operator's kubeconfig would wire it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sigil.issuer.kube.identity import ServiceAccountRef
from sigil.issuer.settings import PolicySettings, ServerSettings
from sigil.issuer.settings.sections import KubeSettings
from sigil_testing.controlplane import ControlPlane
from sigil_testing.issuer import issuer_settings

__all__ = ["AGENT_SERVICE_ACCOUNT", "CLUSTER", "issuer_on"]

#: The cluster name in agents' IDs, and the agents' ServiceAccount name in whichever namespace a test uses.
CLUSTER = "test"
AGENT_SERVICE_ACCOUNT = "sigil-agent"


def issuer_on(
    plane: ControlPlane,
    data_dir: Path,
    *,
    agent_namespace: str,
    kube: Mapping[str, Any] | None = None,
    watch_crds: bool = False,
    **server: Any,
) -> ServerSettings:
    """Settings for an issuer that reaches ``plane`` through its admin kubeconfig (URL, token and CA file).

    Agents are ServiceAccount ``sigil-agent`` of ``agent_namespace`` (a test's fresh namespace); ``kube`` overrides
    other :class:`KubeSettings` fields, ``server`` keywords ``IssuerSettings`` fields. The policy CRD watch is off
    unless ``watch_crds`` (the CRDs must be applied first).
    """
    settings = KubeSettings(
        kubeconfig=plane.kubeconfig,
        cluster=CLUSTER,
        agent_service_accounts=(ServiceAccountRef(agent_namespace, AGENT_SERVICE_ACCOUNT),),
        **dict(kube or {}),
    )
    return issuer_settings(
        data_dir,
        kubeconfig=plane.kubeconfig,
        kubernetes=settings,
        policy=PolicySettings(watch_crds=watch_crds),
        **server,
    )
