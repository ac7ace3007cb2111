"""The Sigil certificate authority: SPIFFE IDs, keys, authorities and their rotation, SVID minting, bundles.

This package's top level stays free of the datastore (SQLAlchemy) so that the enforcer, which runs inside
workloads, can use the SPIFFE domain types without pulling a database client in.
"""

from __future__ import annotations

from sigil.ca.errors import CaError, InvalidSpiffeIdError, InvalidTrustDomainError, SigilError
from sigil.ca.spiffe_id import SpiffeId, TrustDomain

__all__ = [
    "CaError",
    "InvalidSpiffeIdError",
    "InvalidTrustDomainError",
    "SigilError",
    "SpiffeId",
    "TrustDomain",
]
