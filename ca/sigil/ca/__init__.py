"""The Sigil certificate authority: SPIFFE IDs, keys, authorities and their rotation, SVID minting, bundles.

This package's top level stays free of the datastore (SQLAlchemy) so that the enforcer, which runs inside
workloads, can use the SPIFFE domain types without pulling a database client in.
"""

from __future__ import annotations

from sigil.ca.errors import (
    CaError,
    InvalidSpiffeIdError,
    InvalidTrustDomainError,
    SigilError,
    UriSanCountError,
)
from sigil.ca.spiffe_id import SpiffeId, TrustDomain, spiffe_id_of

__all__ = [
    "CaError",
    "InvalidSpiffeIdError",
    "InvalidTrustDomainError",
    "SigilError",
    "SpiffeId",
    "TrustDomain",
    "UriSanCountError",
    "spiffe_id_of",
]
