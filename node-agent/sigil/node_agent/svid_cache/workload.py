"""What the agent holds for each workload: its key, the SVIDs the issuer granted over it, and when they rotate.

A workload is keyed by what the issuer decides its identities from: its pod when attestation found it in one, else
the exact set of its selectors (registration entries match on subsets of them). Each workload has one private key,
generated on the agent and never sent (only a CSR travels), and the X509-SVIDs the issuer granted over it. JWT-SVIDs are cached apart, per (SPIFFE ID, audiences), as SPIRE's agent does (reference §4).
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from datetime import datetime

from cryptography.hazmat.primitives import serialization

from sigil.ca.keys import generate_key, private_key_der
from sigil.issuer.client import IssuedX509Svid, PodRef, X509SvidRequest, make_csr
from sigil.node_agent.attestation.selectors import WorkloadAttestation
from sigil.node_agent.identity_source import WorkloadJwtSvid, WorkloadX509Svid
from sigil.node_agent.rotation import rotation_at

__all__ = [
    "CachedJwt",
    "CachedSvid",
    "Workload",
    "WorkloadKey",
    "cached_svid",
    "key_of",
    "new_keys",
    "workload_of",
]

#: ("pod", uid) or ("selectors", "type:value", ...) sorted.
WorkloadKey = tuple[str, ...]


def _pod_ref(attestation: WorkloadAttestation) -> PodRef | None:
    # The pod as the issuer's request names it, from the pod attestation found (never from selector strings).
    pod = attestation.pod
    if pod is None:
        return None
    return {"namespace": pod.namespace, "name": pod.name, "uid": pod.uid}


@dataclass(frozen=True, slots=True)
class CachedSvid:
    """One X509-SVID as served, with when it expires and which authorities signed its chain."""

    svid: WorkloadX509Svid
    expires_at: datetime
    signers: frozenset[str]


@dataclass(slots=True, eq=False)
class Workload:
    """One workload's cache slot. Mutated only from the event loop, by the manager."""

    key: WorkloadKey
    pod: PodRef | None
    selectors: tuple[str, ...]
    last_seen: datetime
    svids: tuple[CachedSvid, ...] = ()
    rotate_at: datetime | None = None
    denied_until: datetime | None = None
    #: Bumped on every change of the slot, so that stale heap entries are recognised and skipped.
    generation: int = 0
    due_at: datetime | None = None

    def request(self, csr: bytes) -> X509SvidRequest:
        """The batch item asking for this workload's SVIDs over the key behind ``csr``."""
        if self.pod is not None:
            return X509SvidRequest(csr=csr, pod=self.pod)
        return X509SvidRequest(csr=csr, selectors=self.selectors)

    def valid(self, now: datetime) -> tuple[CachedSvid, ...]:
        """The SVIDs that have not expired: the only ones ever served."""
        return tuple(s for s in self.svids if s.expires_at > now)

    def earliest_expiry(self) -> datetime | None:
        return min((s.expires_at for s in self.svids), default=None)

    def signed_by_any(self, authority_ids: frozenset[str]) -> bool:
        return any(s.signers & authority_ids for s in self.svids)

    def adopt(
        self,
        svids: tuple[IssuedX509Svid, ...],
        key_der: bytes,
        *,
        now: datetime,
        rng: random.Random,
    ) -> None:
        """New SVIDs over the key in ``key_der``; when they rotate is ``rotation.py``'s rule.

        A slot that held no valid SVID gets the wide first window: it is new or back from an outage, the two moments
        when many workloads are issued together.
        """
        first = not self.valid(now)
        self.svids = tuple(cached_svid(issued, key_der) for issued in svids)
        self.denied_until = None
        expiry = self.earliest_expiry()
        self.rotate_at = None
        if expiry is not None:
            self.rotate_at = rotation_at(now, expiry, rng, first=first)

    def deny(self, until: datetime) -> None:
        """The issuer entitles this workload to nothing; ask again after ``until``."""
        self.svids, self.rotate_at, self.denied_until = (), None, until


def workload_of(attestation: WorkloadAttestation, now: datetime) -> Workload:
    """A fresh, empty slot for the attested caller."""
    selectors = tuple(sorted(str(s) for s in attestation.selectors))
    # The same strings as ``key_of`` would make, shared with the key rather than made again.
    key = ("pod", attestation.pod.uid) if attestation.pod is not None else ("selectors", *selectors)
    return Workload(key=key, pod=_pod_ref(attestation), selectors=selectors, last_seen=now)


def key_of(attestation: WorkloadAttestation) -> WorkloadKey:
    """The cache key of an attested caller (see :func:`workload_of`)."""
    if attestation.pod is not None:
        return ("pod", attestation.pod.uid)
    return ("selectors", *sorted(str(s) for s in attestation.selectors))


def new_keys(count: int) -> list[tuple[bytes, bytes]]:
    """``count`` fresh (PKCS#8 DER key, PEM CSR) pairs: blocking CPU work, for a worker thread.

    Every issuance and rotation gets a fresh key made here; only the CSR ever leaves the agent.
    """
    pairs = []
    for _ in range(count):
        key = generate_key()
        pairs.append((private_key_der(key), make_csr(key)))
    return pairs


def cached_svid(issued: IssuedX509Svid, private_key_der: bytes) -> CachedSvid:
    """The Workload API form of an SVID the issuer signed over our key."""
    chain_der = b"".join(c.public_bytes(serialization.Encoding.DER) for c in issued.chain)
    return CachedSvid(
        svid=WorkloadX509Svid(
            spiffe_id=issued.spiffe_id, cert_chain=chain_der, private_key=private_key_der
        ),
        expires_at=issued.expires_at,
        signers=_shared(issued.signer_ids),
    )


@functools.lru_cache(maxsize=64)
def _shared(signers: frozenset[str]) -> frozenset[str]:
    # Every SVID names the one or two authorities that signed it: equal sets are kept once, not once per SVID.
    return signers


@dataclass(frozen=True, slots=True)
class CachedJwt:
    """A JWT-SVID kept until its half-life; ``kid`` names the key that signed it (for taints)."""

    svid: WorkloadJwtSvid
    expires_at: datetime
    refresh_at: datetime
    kid: str
