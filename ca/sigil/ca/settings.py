"""The CA's settings: one frozen object, built once by a command's ``cli.py`` and passed down."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from sigil.ca.datastore.store import default_sqlite_url
from sigil.ca.durations import format_duration, parse_duration
from sigil.ca.keys import KeyType
from sigil.ca.spiffe_id import TrustDomain

__all__ = ["CaSettings", "format_duration", "parse_duration"]


@dataclass(frozen=True, slots=True)
class CaSettings:
    """Everything the CA needs to know, with SPIRE's defaults."""

    trust_domain: TrustDomain = field(default_factory=lambda: TrustDomain("example.org"))
    data_dir: Path = Path(".sigil")
    database_url: str = ""
    key_dir: Path | None = None
    key_type: KeyType = KeyType.EC_P256
    jwt_key_type: KeyType = KeyType.EC_P256
    ca_ttl: timedelta = timedelta(hours=24)
    x509_svid_ttl: timedelta = timedelta(hours=1)
    jwt_svid_ttl: timedelta = timedelta(minutes=5)
    refresh_hint: timedelta = timedelta(minutes=5)
    upstream_dir: Path | None = None
    organization: str = "Sigil"
    #: ``disk`` (key files under ``key_dir``) or ``database`` (sealed under ``key_encryption_key_file``).
    key_store: str = "disk"
    key_encryption_key_file: Path | None = None
    #: How long a journal row outlives its SVID before the rotator prunes it: past its expiry nobody accepts the
    #: SVID, so the row only serves an operator looking at what just expired (``ca.journal_grace``).
    journal_grace: timedelta = timedelta(hours=1)
    #: Processes that verify CSRs and sign leaves (``ca.signing_workers``); 1 signs in this process's threads.
    signing_workers: int = 1

    @property
    def effective_database_url(self) -> str:
        return self.database_url or default_sqlite_url(self.data_dir)

    @property
    def effective_key_dir(self) -> Path:
        return self.key_dir if self.key_dir is not None else self.data_dir / "keys"

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], *, data_dir: Path) -> CaSettings:
        """Build from the ``ca`` section of a config file; unknown keys are refused by name."""
        known = {
            "trust_domain",
            "database_url",
            "key_dir",
            "key_type",
            "jwt_key_type",
            "ca_ttl",
            "x509_svid_ttl",
            "jwt_svid_ttl",
            "refresh_hint",
            "upstream_dir",
            "organization",
            "key_store",
            "key_encryption_key_file",
            "journal_grace",
            "signing_workers",
        }
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown CA setting(s): {', '.join(unknown)}")
        defaults = cls()
        settings = cls(
            trust_domain=TrustDomain.parse(str(values.get("trust_domain", defaults.trust_domain))),
            data_dir=data_dir,
            database_url=str(values.get("database_url", "")),
            key_dir=Path(values["key_dir"]) if values.get("key_dir") else None,
            key_type=KeyType.parse(str(values.get("key_type", defaults.key_type))),
            jwt_key_type=KeyType.parse(str(values.get("jwt_key_type", defaults.jwt_key_type))),
            ca_ttl=parse_duration(values.get("ca_ttl", "24h")),
            x509_svid_ttl=parse_duration(values.get("x509_svid_ttl", "1h")),
            jwt_svid_ttl=parse_duration(values.get("jwt_svid_ttl", "5m")),
            refresh_hint=parse_duration(values.get("refresh_hint", "5m")),
            upstream_dir=Path(values["upstream_dir"]) if values.get("upstream_dir") else None,
            organization=str(values.get("organization", "Sigil")),
            key_store=str(values.get("key_store", "disk")),
            key_encryption_key_file=Path(values["key_encryption_key_file"])
            if values.get("key_encryption_key_file")
            else None,
            journal_grace=parse_duration(values.get("journal_grace", "1h")),
            signing_workers=_count(values.get("signing_workers", 1), "signing_workers"),
        )
        settings.check()
        return settings

    def check(self) -> None:
        """Refuse settings that cannot work: an unknown key store, a sealed store without its key, TTLs that
        would not fit an authority's last sixth."""
        if self.signing_workers < 1:
            raise ValueError(f"signing_workers must be 1 or more, not {self.signing_workers}")
        if self.journal_grace < timedelta(0):
            raise ValueError(f"journal_grace {format_duration(self.journal_grace)} is negative")
        if self.key_store not in {"disk", "database"}:
            raise ValueError(f"key_store {self.key_store!r} is neither 'disk' nor 'database'")
        if self.key_store == "database" and self.key_encryption_key_file is None:
            raise ValueError("key_store 'database' needs key_encryption_key_file")
        if self.x509_svid_ttl > self.ca_ttl / 6:
            raise ValueError(
                f"x509_svid_ttl {format_duration(self.x509_svid_ttl)} is longer than a sixth of ca_ttl "
                f"{format_duration(self.ca_ttl)}: SVIDs would be cut short after each rotation"
            )


def _count(value: object, name: str) -> int:
    """A whole number from a config file or flag (``4`` or ``"4"``), or ValueError naming the key."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{name} must be a whole number, not {value!r}")
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, not {value!r}") from None
