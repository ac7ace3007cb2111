"""The trust bundles an enforcer holds: one per trust domain, never pooled.

The SPIFFE standards bind every bundle to its trust domain and ask validators to check a peer against the
bundle *of the peer's own trust domain* (X509-SVID.md §5, SPIFFE_Trust_Domain_and_Bundle.md §4): a root that
one federated domain trusts must never vouch for an identity in another. :class:`BundleSet` keeps that binding
as a mapping from :class:`~sigil.ca.spiffe_id.TrustDomain` to :class:`~sigil.ca.bundle.TrustBundle`; the only
place the anchors meet is :meth:`BundleSet.union_pem`, the coarse first gate a TLS library needs, which is
always followed by a per-domain check.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from sigil.ca.bundle import TrustBundle
from sigil.ca.spiffe_id import TrustDomain

__all__ = ["BundleSet"]


class BundleSet(Mapping[TrustDomain, TrustBundle]):
    """An immutable map of trust domain to its bundle; ``digest`` changes whenever any anchor does."""

    __slots__ = ("_bundles", "digest")

    def __init__(self, bundles: Mapping[TrustDomain, TrustBundle] | None = None) -> None:
        frozen = MappingProxyType(dict(sorted((bundles or {}).items())))
        for trust_domain, bundle in frozen.items():
            if bundle.trust_domain != trust_domain:
                raise ValueError(
                    f"the bundle of {bundle.trust_domain} is filed under {trust_domain}"
                )
        self._bundles: Mapping[TrustDomain, TrustBundle] = frozen
        self.digest = _digest(frozen)

    @classmethod
    def of(cls, *bundles: TrustBundle) -> BundleSet:
        """A set holding ``bundles``; two bundles of one trust domain are a programming error."""
        by_domain: dict[TrustDomain, TrustBundle] = {}
        for bundle in bundles:
            if bundle.trust_domain in by_domain:
                raise ValueError(f"two bundles for {bundle.trust_domain}")
            by_domain[bundle.trust_domain] = bundle
        return cls(by_domain)

    @classmethod
    def from_pem_files(cls, files: Mapping[TrustDomain, Path]) -> BundleSet:
        """Bundles read from PEM files (``bundle.pem`` as ``sigil-server x509 mint --write`` leaves it)."""
        return cls.of(*(TrustBundle.parse_pem(td, path.read_bytes()) for td, path in files.items()))

    def with_bundle(self, bundle: TrustBundle) -> BundleSet:
        """A copy in which ``bundle`` replaces its trust domain's previous bundle."""
        return BundleSet({**self._bundles, bundle.trust_domain: bundle})

    def union_pem(self) -> str:
        """Every X.509 anchor of every domain as PEM: only for a TLS library's first, coarse gate."""
        return "".join(
            cert.public_bytes(serialization.Encoding.PEM).decode()
            for bundle in self._bundles.values()
            for cert in bundle.x509_authorities
        )

    def __getitem__(self, trust_domain: TrustDomain) -> TrustBundle:
        return self._bundles[trust_domain]

    def __iter__(self) -> Iterator[TrustDomain]:
        return iter(self._bundles)

    def __len__(self) -> int:
        return len(self._bundles)

    def __repr__(self) -> str:
        domains = ", ".join(
            f"{td}: {len(b.x509_authorities)} anchors" for td, b in self._bundles.items()
        )
        return f"BundleSet({{{domains}}})"

    # Equality by content, so that a source re-sending the same bundles does not flush caches.
    def __eq__(self, other: object) -> bool:
        return isinstance(other, BundleSet) and other.digest == self.digest

    def __hash__(self) -> int:
        return hash(self.digest)


def _digest(bundles: Mapping[TrustDomain, TrustBundle]) -> str:
    hasher = hashlib.sha256()
    for trust_domain, bundle in bundles.items():
        hasher.update(trust_domain.name.encode() + b"\0")
        for der in sorted(_ders(bundle.x509_authorities)):
            hasher.update(hashlib.sha256(der).digest())
        hasher.update(b"\1")
    return hasher.hexdigest()


def _ders(certs: Iterable[x509.Certificate]) -> list[bytes]:
    return [cert.public_bytes(serialization.Encoding.DER) for cert in certs]
