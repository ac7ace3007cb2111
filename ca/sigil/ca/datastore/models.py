"""Tables of the CA's datastore. Migrations in ``migrations/versions`` create exactly these."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "AuthorityKeyRow",
    "AuthorityRow",
    "Base",
    "BundleStateRow",
    "JournalRow",
    "RotationLockRow",
    "UpstreamCaRow",
]


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class AuthorityRow(Base):
    __tablename__ = "authorities"

    authority_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16))
    tainted: Mapped[bool] = mapped_column(Boolean, default=False)
    not_before: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    not_after: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    public_key_der: Mapped[bytes] = mapped_column(LargeBinary)
    #: The authority's CA certificate, then its upstream chain, DER concatenated (X.509 only).
    certificate_chain_der: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    upstream_root_der: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    #: HMAC-SHA256 over the row under a key derived from the key-encryption key (``rowseal.py``); NULL when the
    #: key store is on disk, or for a row written before sealing.
    seal: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class BundleStateRow(Base):
    """One row: the bundle's sequence number and a digest of the content it numbers."""

    __tablename__ = "bundle_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sequence: Mapped[int] = mapped_column(Integer)
    digest: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class RotationLockRow(Base):
    """One row that every rotation updates first: a row lock on PostgreSQL, the write lock on SQLite."""

    __tablename__ = "rotation_lock"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    taken_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class JournalRow(Base):
    """One issued SVID: enough to find what a tainted authority signed, never the SVID's key."""

    __tablename__ = "svid_journal"
    __table_args__ = (
        Index("ix_svid_journal_authority_id", "authority_id"),
        Index("ix_svid_journal_spiffe_id", "spiffe_id"),
        Index("ix_svid_journal_not_after", "not_after"),
        Index("ix_svid_journal_reissue_due", "reissue_due", "not_after"),
    )

    serial: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))
    spiffe_id: Mapped[str] = mapped_column(String(2048))
    authority_id: Mapped[str] = mapped_column(ForeignKey("authorities.authority_id"))
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    not_after: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    reissue_due: Mapped[bool] = mapped_column(Boolean, default=False)
    #: The agent that asked for the SVID (or the server, for its own); NULL when minted by hand or agentless.
    holder: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    #: When a fresh SVID of the same kind and ID reached the same holder after a taint marked this one.
    replaced_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class AuthorityKeyRow(Base):
    """An authority's private key sealed under the key-encryption key (``ca.key_store: database`` only)."""

    __tablename__ = "authority_keys"

    authority_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))
    sealed_key: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class UpstreamCaRow(Base):
    """An upstream CA an operator introduced: where its files are, and where it is in an upstream rotation."""

    __tablename__ = "upstream_cas"

    #: SHA-256 of the root's DER, hex: the root is what the bundle carries, so it names the upstream.
    root_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: The directory of the four files; the key is read from there, never stored here.
    directory: Mapped[str] = mapped_column(String(4096))
    status: Mapped[str] = mapped_column(String(16))
    root_der: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
