"""The server's settings: built once from the config file, the environment and flags, then passed down."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sigil.ca.config import ConfigError, data_dir_from, load_config_file, pick
from sigil.ca.errors import InvalidTrustDomainError
from sigil.ca.settings import CaSettings

__all__ = ["ServerSettings", "load_server_settings"]


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """Everything ``sigil-server`` needs, grouped by part."""

    data_dir: Path
    ca: CaSettings
    config_file: Path | None = None


def load_server_settings(
    config_file: Path | None,
    *,
    data_dir: str | None = None,
    trust_domain: str | None = None,
    database_url: str | None = None,
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
    resolved_dir = data_dir_from(data_dir, values)
    merged = dict(ca_values)
    merged["trust_domain"] = pick(
        trust_domain, "SIGIL_TRUST_DOMAIN", values, "trust_domain", "example.org"
    )
    url = pick(database_url, "SIGIL_DATABASE_URL", ca_values, "database_url", "")
    if url:
        merged["database_url"] = url
    try:
        ca = CaSettings.from_mapping(merged, data_dir=resolved_dir)
    except InvalidTrustDomainError as err:
        raise ConfigError(source, f"trust_domain: {err.rule}") from err
    except ValueError as err:
        raise ConfigError(source, f"ca: {err}") from err
    return ServerSettings(data_dir=resolved_dir, ca=ca, config_file=config_file)
