"""Errors of the certificate authority, and the root of every Sigil error.

Every other component's ``errors.py`` hangs its own tree under :class:`SigilError`, so a caller can catch
everything Sigil raises in one place while leaf errors still carry the data that explains them::

    SigilError
    └── CaError
        ├── InvalidSpiffeIdError          (value, rule)
        ├── InvalidTrustDomainError       (value, rule)
        ├── UriSanCountError              (count)
        ├── KeyStoreError                 (path, reason)
        ├── MalformedCsrError             (reason)
        ├── AuthorityError                (authority_id, reason)
        │   ├── AuthorityInUseError       (authority_id, remaining, holders, last_expiry)
        │   │   └── UpstreamInUseError    (authority_id = "upstream ROOT", remaining, holders, last_expiry)
        │   └── NoActiveAuthorityError    (kind)
        │       └── AuthorityRowRefusedError  (authority_id, kind)
        ├── UpstreamAuthorityError        (path, reason)
        ├── BundleError                   (reason)
        ├── JwtSvidError                  (reason)
        ├── TtlError                      (requested, reason)
        ├── ConfigError                   (source, reason)
        ├── SigningUnavailableError       (reason): the signing workers failed twice over one batch
        └── DatastoreError                (reason)
            ├── DatastoreUnavailableError (operation, cause): the database failed; nothing above sees the driver
            └── RotationLockedError

Messages never include key material: keys are named by their file or authority id, never printed.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

__all__ = [
    "AuthorityError",
    "AuthorityInUseError",
    "AuthorityRowRefusedError",
    "BundleError",
    "CaError",
    "ConfigError",
    "DatastoreError",
    "DatastoreUnavailableError",
    "InvalidSpiffeIdError",
    "InvalidTrustDomainError",
    "JwtSvidError",
    "KeyStoreError",
    "MalformedCsrError",
    "NoActiveAuthorityError",
    "RotationLockedError",
    "SigilError",
    "SigningUnavailableError",
    "TtlError",
    "UpstreamAuthorityError",
    "UpstreamInUseError",
    "UriSanCountError",
]


class SigilError(Exception):
    """The root of every error Sigil raises on purpose."""


class CaError(SigilError):
    """Something the certificate authority refused or could not do."""


class InvalidSpiffeIdError(CaError):
    """A SPIFFE ID that breaks a rule of the SPIFFE-ID standard; ``rule`` names the rule."""

    def __init__(self, value: str, rule: str) -> None:
        super().__init__(f"invalid SPIFFE ID {value!r}: {rule}")
        self.value = value
        self.rule = rule


class UriSanCountError(CaError):
    """A certificate with no URI SAN or several, where an X509-SVID has exactly one (X509-SVID.md §2)."""

    def __init__(self, count: int) -> None:
        which = "no URI SAN" if count == 0 else f"{count} URI SANs"
        super().__init__(f"the certificate has {which}; an X509-SVID has exactly one")
        self.count = count


class InvalidTrustDomainError(CaError):
    """A trust domain name that breaks a rule of the SPIFFE-ID standard."""

    def __init__(self, value: str, rule: str) -> None:
        super().__init__(f"invalid trust domain {value!r}: {rule}")
        self.value = value
        self.rule = rule


class KeyStoreError(CaError):
    """A private key could not be written or read. The message names the file, never the key."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"key file {path}: {reason}")
        self.path = path
        self.reason = reason


class MalformedCsrError(CaError):
    """A certificate signing request that is not usable: unparsable, badly signed, wrong key type."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"malformed CSR: {reason}")
        self.reason = reason


class AuthorityError(CaError):
    """A signing authority cannot take the requested step (for example, revoking the active one)."""

    def __init__(self, authority_id: str, reason: str) -> None:
        super().__init__(f"authority {authority_id}: {reason}")
        self.authority_id = authority_id
        self.reason = reason


class AuthorityInUseError(AuthorityError):
    """Revoking would cut SVIDs still in use: unexpired, signed by it, not yet replaced since the taint."""

    def __init__(
        self,
        authority_id: str,
        description: str,
        *,
        remaining: int,
        holders: Mapping[str, int],
        last_expiry: datetime | None,
    ) -> None:
        super().__init__(
            authority_id,
            f"not revoked: {description}. Wait until they are re-issued (`authority show --id "
            f"{authority_id}`), or revoke with --force to cut them off now",
        )
        self.remaining = remaining
        self.holders = dict(holders)
        self.last_expiry = last_expiry


class UpstreamInUseError(AuthorityInUseError):
    """Retiring an old upstream would cut SVIDs still chained to its root and not yet replaced since the taint."""

    def __init__(
        self,
        root: str,
        description: str,
        *,
        remaining: int,
        holders: Mapping[str, int],
        last_expiry: datetime | None,
    ) -> None:
        super().__init__(
            f"upstream {root}",
            description,
            remaining=remaining,
            holders=holders,
            last_expiry=last_expiry,
        )
        self.args = (
            f"upstream root {root}: not retired: {description}. Wait until they are re-issued "
            "(`upstream show`), or retire with --force to cut them off now",
        )
        self.reason = str(self.args[0])


class NoActiveAuthorityError(AuthorityError):
    """There is no active authority of this kind to sign with."""

    def __init__(self, kind: str) -> None:
        super().__init__("-", f"no active {kind} authority")
        self.kind = kind


class AuthorityRowRefusedError(NoActiveAuthorityError):
    """The row that claims to be the active authority does not verify under the key-encryption key.

    Something other than Sigil wrote it (or changed it) in the datastore, so it does not sign; the rotator replaces
    it with a fresh authority at its next tick.
    """

    def __init__(self, authority_id: str, kind: str) -> None:
        super().__init__(kind)
        self.args = (
            f"authority {authority_id}: the row that claims to be the active {kind} authority does not verify "
            "under the key-encryption key (it was written or changed outside Sigil); it is not used to sign",
        )
        self.authority_id = authority_id
        self.reason = "its datastore row does not verify under the key-encryption key"


class UpstreamAuthorityError(CaError):
    """The operator's upstream CA files are missing, inconsistent or unusable."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"upstream CA {path}: {reason}")
        self.path = path
        self.reason = reason


class BundleError(CaError):
    """A trust bundle document that does not parse or breaks the SPIFFE bundle format."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"trust bundle: {reason}")
        self.reason = reason


class JwtSvidError(CaError):
    """A JWT-SVID that cannot be minted or does not validate."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"JWT-SVID: {reason}")
        self.reason = reason


class TtlError(CaError):
    """A requested lifetime that is not positive or is beyond what the CA allows."""

    def __init__(self, requested: str, reason: str) -> None:
        super().__init__(f"TTL {requested}: {reason}")
        self.requested = requested
        self.reason = reason


class DatastoreError(CaError):
    """The datastore could not be opened, migrated or written."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"datastore: {reason}")
        self.reason = reason


class DatastoreUnavailableError(DatastoreError):
    """The database could not be reached or refused a statement while ``operation`` ran; the cause is the driver's."""

    def __init__(self, operation: str, cause: str) -> None:
        super().__init__(f"{operation} failed: {cause}")
        self.operation = operation
        self.cause = cause


class ConfigError(CaError):
    """A configuration file or value that cannot be used; the message names the file and key."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class SigningUnavailableError(CaError):
    """The signing worker processes could not sign a batch, even after they were restarted: try again later."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"signing unavailable: {reason}")
        self.reason = reason


class RotationLockedError(DatastoreError):
    """Another process holds the rotation lock; this one must not rotate now."""

    def __init__(self) -> None:
        super().__init__("another process is rotating authorities")
