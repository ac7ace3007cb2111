"""The server's settings: built once from the config file, the environment and flags, then passed down.

The file's ``server`` section is read by :mod:`sigil.issuer.settings.sections` (one frozen object per part); this
module layers the top-level keys, the CA section and the flags, and refuses unknown keys by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sigil.ca.config import ConfigError, data_dir_from, load_config_file, pick
from sigil.ca.errors import InvalidTrustDomainError
from sigil.ca.settings import CaSettings
from sigil.issuer.errors import ConfigError as IssuerConfigError
from sigil.issuer.settings.sections import (
    IssuerSettings,
    PolicySettings,
    parse_issuer_settings,
    parse_policy_settings,
)

__all__ = ["IssuerSettings", "PolicySettings", "ServerSettings", "load_server_settings"]


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """Everything ``sigil-server`` needs, grouped by part."""

    data_dir: Path
    ca: CaSettings
    config_file: Path | None = None
    server: IssuerSettings = field(default_factory=IssuerSettings)
    policy: PolicySettings = field(default_factory=PolicySettings)

    @property
    def admin_socket(self) -> Path:
        return self.server.admin_socket or self.data_dir / "admin.sock"


def load_server_settings(
    config_file: Path | None,
    *,
    data_dir: str | None = None,
    trust_domain: str | None = None,
    database_url: str | None = None,
    listen: str | None = None,
    admin_socket: str | None = None,
    kubeconfig: str | None = None,
    signing_workers: int | None = None,
) -> ServerSettings:
    """Layer flags over ``SIGIL_*`` environment variables over the file over the embedded defaults."""
    values = load_config_file(config_file)
    source = str(config_file) if config_file else "settings"
    unknown = sorted(set(values) - {"data_dir", "trust_domain", "ca", "server", "agent", "policy"})
    if unknown:
        raise ConfigError(source, f"unknown top-level key(s): {', '.join(unknown)}")
    ca_values: Mapping[str, Any] = values.get("ca") or {}
    if not isinstance(ca_values, Mapping):
        raise ConfigError(source, "'ca' must be a mapping")
    server_values: Mapping[str, Any] = values.get("server") or {}
    if not isinstance(server_values, Mapping):
        raise ConfigError(source, "'server' must be a mapping")
    resolved_dir = data_dir_from(data_dir, values)
    merged = dict(ca_values)
    merged["trust_domain"] = pick(
        trust_domain, "SIGIL_TRUST_DOMAIN", values, "trust_domain", "example.org"
    )
    url = pick(database_url, "SIGIL_DATABASE_URL", ca_values, "database_url", "")
    if url:
        merged["database_url"] = url
    workers = pick(signing_workers, "SIGIL_SIGNING_WORKERS", ca_values, "signing_workers")
    if workers is not None:
        merged["signing_workers"] = workers
    try:
        ca = CaSettings.from_mapping(merged, data_dir=resolved_dir)
    except InvalidTrustDomainError as err:
        raise ConfigError(source, f"trust_domain: {err.rule}") from err
    except ValueError as err:
        raise ConfigError(source, f"ca: {err}") from err
    layered = dict(server_values)
    for key, flag, env in (
        ("listen", listen, "SIGIL_LISTEN"),
        ("admin_socket", admin_socket, "SIGIL_ADMIN_SOCKET"),
        ("log_level", None, "SIGIL_LOG_LEVEL"),
    ):
        value = pick(flag, env, server_values, key)
        if value is not None:
            layered[key] = value
    kube_values = dict(layered.get("kubernetes") or {})
    config_path = pick(kubeconfig, "SIGIL_KUBECONFIG", kube_values, "kubeconfig")
    if config_path is not None:
        kube_values["kubeconfig"] = config_path
        layered["kubernetes"] = kube_values
    base_dir = config_file.parent if config_file else None
    try:
        server = parse_issuer_settings(layered, base_dir=base_dir)
    except (ValueError, IssuerConfigError) as err:
        raise ConfigError(source, f"server: {err}") from err
    policy_values = values.get("policy") or {}
    if not isinstance(policy_values, Mapping):
        raise ConfigError(source, "'policy' must be a mapping")
    try:
        policy = parse_policy_settings(policy_values, base_dir=base_dir)
    except ValueError as err:
        raise ConfigError(source, f"policy: {err}") from err
    return ServerSettings(
        data_dir=resolved_dir, ca=ca, config_file=config_file, server=server, policy=policy
    )
