"""The ``server`` section of ``sigil-server``'s configuration, as frozen objects grouped by part.

Every key is checked here, before anything listens: a typo in a federation URL or an allow-list entry must stop the
server at start, not surface as a refusal an hour later. The README lists every key with its default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from sigil.ca.durations import parse_duration
from sigil.ca.spiffe_id import SpiffeId, TrustDomain
from sigil.issuer.kube.identity import (
    DEFAULT_WORKLOAD_ID_TEMPLATE,
    ServiceAccountRef,
    WorkloadIdTemplate,
)
from sigil.kit.logs import parse_log_level

__all__ = [
    "IN_CLUSTER_NAMESPACE_FILE",
    "BundleEndpointSettings",
    "FederationPeer",
    "IssuerSettings",
    "KubeSettings",
    "PolicySettings",
    "parse_issuer_settings",
    "parse_policy_settings",
    "resolve_namespace",
]

Profile = Literal["https_web", "https_spiffe"]


@dataclass(frozen=True, slots=True)
class KubeSettings:
    """How the issuer reaches Kubernetes and whom it accepts from there."""

    kubeconfig: Path | None = None
    in_cluster: bool = False
    cluster: str = "default"
    agent_audience: str = "sigil-server"
    agent_service_accounts: tuple[ServiceAccountRef, ...] = field(
        default=(ServiceAccountRef("sigil-system", "sigil-agent"),)
    )
    workload_audience: str = "sigil-workload"
    workload_id_template: WorkloadIdTemplate = field(default_factory=WorkloadIdTemplate)
    #: A ConfigMap (created with the manifests) the server keeps holding the bundle, for consumers that do not
    #: speak the Workload API; in the server's own namespace unless ``bundle_configmap_namespace`` says otherwise.
    bundle_configmap: str | None = None
    bundle_configmap_namespace: str | None = None


@dataclass(frozen=True, slots=True)
class BundleEndpointSettings:
    """The SPIFFE federation bundle endpoint on its own listener.

    ``https_web``: a Web PKI certificate from ``cert_file``/``key_file``. ``https_spiffe``: the server's own SVID
    (``spiffe://TD/sigil/server``), renewed and rotated with it, which peers check against our bundle.
    """

    host: str = "0.0.0.0"  # noqa: S104 -- the federation endpoint is public by design
    port: int = 8443
    cert_file: Path | None = Path("bundle-endpoint.crt")
    key_file: Path | None = Path("bundle-endpoint.key")
    profile: Profile = "https_web"


@dataclass(frozen=True, slots=True)
class FederationPeer:
    """Another trust domain whose bundle endpoint we poll (SPIFFE Federation §5: URL, profile, trust domain)."""

    trust_domain: TrustDomain
    url: str
    profile: Profile = "https_web"
    endpoint_spiffe_id: SpiffeId | None = None
    bootstrap_bundle: Path | None = None
    #: Extra roots for ``https_web`` (a private Web PKI); the system roots otherwise.
    ca_file: Path | None = None


@dataclass(frozen=True, slots=True)
class IssuerSettings:
    """The issuance service's own settings (the CA's are in ``CaSettings``)."""

    host: str = "127.0.0.1"
    port: int = 8081
    admin_socket: Path | None = None
    dns_names: tuple[str, ...] = ("localhost",)
    client_max_size: int = 1024 * 1024
    rate_per_second: float = 50.0
    rate_burst: float = 100.0
    rotate_interval: timedelta = timedelta(seconds=10)
    #: How often the authorities are re-read from the datastore, so another replica's taint or rotation
    #: reaches this replica's waiting agents within about this long (the rotate tick is too slow for that).
    refresh_interval: timedelta = timedelta(seconds=1)
    long_poll_max: timedelta = timedelta(minutes=5)
    agent_svid_ttl: timedelta | None = None
    #: The ``issuer`` of the OIDC discovery document; unset, discovery answers 404 (never the Host header's).
    oidc_issuer: str | None = None
    kubernetes: KubeSettings | None = None
    bundle_endpoint: BundleEndpointSettings | None = None
    federates_with: tuple[FederationPeer, ...] = ()
    #: ``debug``, ``info``, ``warning``, ``error`` or ``critical`` (``server.log_level`` or ``SIGIL_LOG_LEVEL``).
    log_level: str = "info"


@dataclass(frozen=True, slots=True)
class PolicySettings:
    """Where the issuer's authorization policies come from (the top-level ``policy`` section).

    Policies applied through the admin API always count; ``directory`` adds a watched directory of YAML files,
    and ``watch_crds`` the cluster's ``authz.sigil.dev`` resources when Kubernetes is configured. Istio's and
    Linkerd's documents in the directory are translated (``root_namespace``: Istio's).
    """

    directory: Path | None = None
    poll_interval: timedelta = timedelta(seconds=1)
    watch_crds: bool = True
    #: Istio's ``rootNamespace``: its AuthorizationPolicies read from here apply mesh-wide (``scope: Mesh``).
    root_namespace: str = "istio-system"
    #: How often the API server is asked again which of Istio's and Linkerd's kinds it serves.
    crd_discovery_interval: timedelta = timedelta(seconds=30)


def parse_policy_settings(values: Mapping[str, Any], *, base_dir: Path | None) -> PolicySettings:
    """Build from the ``policy`` section."""
    _only(
        values,
        {"directory", "poll_interval", "watch_crds", "root_namespace", "crd_discovery_interval"},
        "policy",
    )
    return PolicySettings(
        directory=_path(values["directory"], base_dir) if values.get("directory") else None,
        poll_interval=parse_duration(values.get("poll_interval", "1s")),
        watch_crds=bool(values.get("watch_crds", True)),
        root_namespace=str(values.get("root_namespace", "istio-system")),
        # parse_duration refuses zero and negative durations itself.
        crd_discovery_interval=parse_duration(values.get("crd_discovery_interval", "30s")),
    )


def _path(value: Any, base_dir: Path | None) -> Path:
    path = Path(str(value))
    return path if path.is_absolute() or base_dir is None else base_dir / path


def _only(values: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {where} key(s): {', '.join(unknown)}")


def _kube(values: Mapping[str, Any], base_dir: Path | None) -> KubeSettings:
    _only(values, set(KubeSettings.__dataclass_fields__), "kubernetes")
    d = KubeSettings()
    accounts = values.get("agent_service_accounts")
    return KubeSettings(
        kubeconfig=_path(values["kubeconfig"], base_dir) if values.get("kubeconfig") else None,
        in_cluster=bool(values.get("in_cluster", False)),
        cluster=str(values.get("cluster", d.cluster)),
        agent_audience=str(values.get("agent_audience", d.agent_audience)),
        agent_service_accounts=tuple(ServiceAccountRef.parse(str(a)) for a in accounts)
        if accounts is not None
        else d.agent_service_accounts,
        workload_audience=str(values.get("workload_audience", d.workload_audience)),
        workload_id_template=WorkloadIdTemplate(
            str(values.get("workload_id_template", DEFAULT_WORKLOAD_ID_TEMPLATE))
        ),
        bundle_configmap=str(values["bundle_configmap"])
        if values.get("bundle_configmap")
        else None,
        bundle_configmap_namespace=str(values["bundle_configmap_namespace"])
        if values.get("bundle_configmap_namespace")
        else None,
    )


def _peer(values: Mapping[str, Any], base_dir: Path | None) -> FederationPeer:
    _only(values, set(FederationPeer.__dataclass_fields__), "federates_with")
    profile = str(values.get("profile", "https_web"))
    if profile not in ("https_web", "https_spiffe"):
        raise ValueError(f"federation profile {profile!r} is not https_web or https_spiffe")
    url = str(values.get("url", ""))
    if not url.startswith("https://"):
        raise ValueError(f"federation URL {url!r} must be https://")
    endpoint_id = values.get("endpoint_spiffe_id")
    bootstrap = values.get("bootstrap_bundle")
    if profile == "https_spiffe" and (not endpoint_id or not bootstrap):
        raise ValueError("https_spiffe needs endpoint_spiffe_id and bootstrap_bundle")
    return FederationPeer(
        trust_domain=TrustDomain.parse(str(values["trust_domain"])),
        url=url,
        profile="https_spiffe" if profile == "https_spiffe" else "https_web",
        endpoint_spiffe_id=SpiffeId.parse(str(endpoint_id)) if endpoint_id else None,
        bootstrap_bundle=_path(bootstrap, base_dir) if bootstrap else None,
        ca_file=_path(values["ca_file"], base_dir) if values.get("ca_file") else None,
    )


def _oidc_issuer(value: Any) -> str:
    """The OIDC ``issuer``: an https URL with no query or fragment (OpenID Connect Discovery 1.0 §3)."""
    text = str(value).rstrip("/")
    parts = urlsplit(text)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"oidc_issuer {text!r} must be an https:// URL with a host")
    if parts.query or parts.fragment or parts.username or parts.password or "?" in text:
        raise ValueError(
            f"oidc_issuer {text!r} must not carry a query, fragment or user information"
        )
    return text


def parse_issuer_settings(values: Mapping[str, Any], *, base_dir: Path | None) -> IssuerSettings:
    """Build from the ``server`` section (flags and environment already layered in)."""
    _only(
        values,
        {
            "listen",
            "admin_socket",
            "dns_names",
            "client_max_size",
            "rate_per_second",
            "rate_burst",
            "rotate_interval",
            "refresh_interval",
            "long_poll_max",
            "agent_svid_ttl",
            "oidc_issuer",
            "kubernetes",
            "bundle_endpoint",
            "federates_with",
            "log_level",
        },
        "server",
    )
    d = IssuerSettings()
    host, port = d.host, d.port
    if values.get("listen"):
        host, _, port_text = str(values["listen"]).rpartition(":")
        host, port = host.strip("[]") or d.host, int(port_text)
    endpoint = None
    if values.get("bundle_endpoint"):
        raw = values["bundle_endpoint"]
        _only(raw, {"listen", "cert_file", "key_file", "profile"}, "bundle_endpoint")
        e_host, _, e_port = str(raw.get("listen", "0.0.0.0:8443")).rpartition(":")
        e_profile = str(raw.get("profile", "https_web"))
        if e_profile not in ("https_web", "https_spiffe"):
            raise ValueError(
                f"bundle_endpoint profile {e_profile!r} is not https_web or https_spiffe"
            )
        if e_profile == "https_web" and not (raw.get("cert_file") and raw.get("key_file")):
            raise ValueError("bundle_endpoint with profile https_web needs cert_file and key_file")
        endpoint = BundleEndpointSettings(
            e_host.strip("[]"),
            int(e_port),
            _path(raw["cert_file"], base_dir) if raw.get("cert_file") else None,
            _path(raw["key_file"], base_dir) if raw.get("key_file") else None,
            "https_spiffe" if e_profile == "https_spiffe" else "https_web",
        )
    return IssuerSettings(
        host=host,
        port=port,
        admin_socket=Path(str(values["admin_socket"])) if values.get("admin_socket") else None,
        dns_names=tuple(str(n) for n in values.get("dns_names", d.dns_names)),
        client_max_size=int(values.get("client_max_size", d.client_max_size)),
        rate_per_second=float(values.get("rate_per_second", d.rate_per_second)),
        rate_burst=float(values.get("rate_burst", d.rate_burst)),
        rotate_interval=parse_duration(values.get("rotate_interval", "10s")),
        refresh_interval=parse_duration(values.get("refresh_interval", "1s")),
        long_poll_max=parse_duration(values.get("long_poll_max", "5m")),
        agent_svid_ttl=parse_duration(values["agent_svid_ttl"])
        if values.get("agent_svid_ttl")
        else None,
        oidc_issuer=_oidc_issuer(values["oidc_issuer"]) if values.get("oidc_issuer") else None,
        kubernetes=_kube(values["kubernetes"], base_dir)
        if values.get("kubernetes") is not None
        else None,
        bundle_endpoint=endpoint,
        federates_with=tuple(_peer(p, base_dir) for p in values.get("federates_with") or ()),
        log_level=parse_log_level(values.get("log_level", d.log_level)),
    )


#: Where Kubernetes mounts the pod's own namespace (https://kubernetes.io/docs/tasks/run-application/access-api-from-pod/).
IN_CLUSTER_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


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
