"""What one process knows of the authorities between refreshes: the rows, the signers and the bundle they make.

Minting must cost no database read, so each process keeps this snapshot in memory and re-reads it after every change
it makes and on every rotator tick (:meth:`~sigil.ca.service.CertificateAuthority.refresh`); replicas therefore
agree on the active authority within one tick and never sign with a revoked one for longer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sigil.ca.authority import Authority, AuthorityKind, AuthorityStatus, Signer
from sigil.ca.authority_steps import bundle_of
from sigil.ca.bundle import TrustBundle
from sigil.ca.datastore.store import Datastore
from sigil.ca.errors import AuthorityRowRefusedError, NoActiveAuthorityError
from sigil.ca.keystore import KeyStore
from sigil.ca.settings import CaSettings

__all__ = ["Snapshot", "read_snapshot"]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The authorities this process trusts, the signer of each kind and the bundle, as last read."""

    authorities: tuple[Authority, ...] = ()
    signers: Mapping[AuthorityKind, Signer] = field(default_factory=dict)
    bundle: TrustBundle | None = None
    #: Per kind, a refused row that claims to be active while no row that verifies is: named in the error.
    refused_active: Mapping[AuthorityKind, str] = field(default_factory=dict)

    def signer(self, kind: AuthorityKind, now: datetime) -> Signer:
        """The active signer of ``kind`` while it has not expired; else why there is none."""
        signer = self.signers.get(kind)
        if signer is None or signer.authority.not_after <= now:
            refused = self.refused_active.get(kind)
            if refused is not None:
                raise AuthorityRowRefusedError(refused, kind.value)
            raise NoActiveAuthorityError(kind.value)
        return signer


async def read_snapshot(
    store: Datastore, keys: KeyStore, *, settings: CaSettings, now: datetime
) -> Snapshot:
    """The authorities and bundle sequence as the datastore holds them now, with the active authorities' keys."""
    rows = await store.read_authorities()
    authorities = rows.trusted
    refused_active = {
        AuthorityKind(r.kind): r.authority_id
        for r in rows.refused
        if r.status == AuthorityStatus.ACTIVE.value and r.kind in set(AuthorityKind)
    }
    sequence = await store.bundle_sequence()
    signers: dict[AuthorityKind, Signer] = {}
    for authority in authorities:
        if authority.status is AuthorityStatus.ACTIVE:
            signers[authority.kind] = Signer(
                authority, await keys.get(authority.kind, authority.authority_id)
            )
    return Snapshot(
        authorities,
        signers,
        bundle_of(authorities, now, sequence, settings=settings),
        {k: v for k, v in refused_active.items() if k not in signers},
    )
