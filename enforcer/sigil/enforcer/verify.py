"""Verifying a presented certificate chain as an X509-SVID of a trusted domain.

Two questions, in order (reference §1; https://github.com/spiffe/spiffe/blob/main/standards/X509-SVID.md §5):

1. Is the leaf an X509-SVID? Not a CA (cA=false, no keyCertSign/cRLSign), exactly one URI SAN holding a SPIFFE
   ID with a path, digitalSignature set, and serverAuth+clientAuth when it lists extended key usages; and is
   every certificate presented valid now (the clock is injected)?
2. Does it chain, by RFC 5280 path validation, to the bundle of *its own* trust domain? Federated domains use
   their own bundle; a domain without one is unknown; there is no pooled store to fall back to.

Path validation is pyca/cryptography's ``x509.verification`` (the Rust port of the webpki/rustls-webpki
profile: RFC 5280 plus CA/B limits on algorithms and key sizes). Its :class:`ClientVerifier` accepts a leaf
whose only SAN is a URI and hands the SANs back; its ``ServerVerifier`` insists on matching a DNS name or IP
address, which SPIFFE does not use, so both directions use the client verifier. That verifier also requires
the clientAuth EKU, which the standard has every X509-SVID carry next to serverAuth.

A leaf presented alone and issued directly by an anchor of its domain, made from the same template as a leaf
that path validation accepted under that anchor before, is verified by :mod:`sigil.enforcer.verify_profile`
with one signature check and the checks of what differs between leaves (the SPIFFE ID of a URI that verified
before is not parsed again: a rotated leaf names the ID its workload had); everything else takes path
validation, whose verifier is built once per trust domain and second. Both are per generation of the bundles.

A successful verification is cached under the SHA-256 of the presented chain, so a peer that reconnects costs
one hash and one dict lookup: entries expire when the earliest certificate of the verified path does (at the
latest, the leaf's notAfter), the cache is bounded (oldest out first) and emptied whenever the bundles
change. Refusals are not cached: they are cheap to repeat and must not outlive a bundle update. With the cache
off (``cache_size=0``) no hash is taken.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import verification

from sigil.ca.errors import InvalidSpiffeIdError
from sigil.ca.spiffe_id import SpiffeId, TrustDomain
from sigil.enforcer.bundles import BundleSet
from sigil.enforcer.errors import SvidVerificationError
from sigil.enforcer.verify_profile import Anchor, anchors_by_issuer, leaf_shape, match_leaf
from sigil.enforcer.verify_rules import Refusal, leaf_spiffe_id

__all__ = ["Clock", "Refusal", "SvidVerifier", "VerifiedSvid", "chain_digest"]

Clock = Callable[[], datetime]
Presented = Sequence[bytes | x509.Certificate]

_DER = serialization.Encoding.DER
#: How many SPIFFE IDs of verified leaves each generation remembers (emptied when full).
_MAX_IDS = 16_384


@dataclass(frozen=True, slots=True)
class VerifiedSvid:
    """A peer that passed: its SPIFFE ID, the verified path (leaf first, anchor last) and when it expires."""

    spiffe_id: SpiffeId
    chain: tuple[x509.Certificate, ...]
    expires: datetime


def chain_digest(chain: Sequence[bytes]) -> bytes:
    """The cache key of a presented chain: SHA-256 over each certificate's length and DER."""
    hasher = hashlib.sha256()
    for der in chain:
        hasher.update(len(der).to_bytes(4, "big"))
        hasher.update(der)
    return hasher.digest()


class _Generation:
    """What one version of the bundles needs: per-domain stores and anchors, and the chains they verified."""

    __slots__ = ("anchors", "bundles", "cache", "ids", "profile_hits", "stores", "verifiers")

    def __init__(self, bundles: BundleSet, *, profiles: bool) -> None:
        self.bundles = bundles
        self.stores = {
            td: verification.Store(list(bundle.x509_authorities))
            for td, bundle in bundles.items()
            if bundle.x509_authorities
        }
        # By issuer name across trust domains (each anchor knows its own): empty with the profile path off.
        self.anchors: dict[bytes, list[Anchor]] = (
            anchors_by_issuer({td: bundle.x509_authorities for td, bundle in bundles.items()})
            if profiles
            else {}
        )
        # Per trust domain, the path verifier of the current second (X.509 times have no finer grain).
        self.verifiers: dict[TrustDomain, tuple[int, verification.ClientVerifier]] = {}
        self.cache: OrderedDict[bytes, VerifiedSvid] = OrderedDict()
        # The SPIFFE IDs of leaves the leaf-profile path verified, by their URI: a workload presents a new leaf
        # at every rotation, but with the ID it had (a parse is about a tenth of the path's own work).
        self.ids: dict[str, SpiffeId] = {}
        self.profile_hits = 0

    def verifier(
        self, trust_domain: TrustDomain, now: datetime
    ) -> verification.ClientVerifier | None:
        """The path verifier for ``trust_domain`` at ``now`` (None: no X.509 bundle for it)."""
        second = int(now.timestamp())
        found = self.verifiers.get(trust_domain)
        if found is not None and found[0] == second:
            return found[1]
        store = self.stores.get(trust_domain)
        if store is None:
            return None
        at = datetime.fromtimestamp(second, UTC)
        built = verification.PolicyBuilder().store(store).time(at).build_client_verifier()
        self.verifiers[trust_domain] = (second, built)
        return built


class SvidVerifier:
    """Verifies presented chains against a :class:`BundleSet`, caching successes (see the module docstring).

    ``leaf_profiles=False`` sends every chain through path validation (benchmarks and tests compare the two).

    Thread-safe: TLS handshakes may call it from the event loop and from worker threads alike.
    """

    def __init__(
        self,
        bundles: BundleSet,
        *,
        clock: Clock | None = None,
        cache_size: int = 10_000,
        leaf_profiles: bool = True,
    ) -> None:
        if cache_size < 0:
            raise ValueError("cache_size must not be negative")
        self._profiles = leaf_profiles
        self._clock: Clock = clock or _utcnow
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._generation = _Generation(bundles, profiles=self._profiles)
        self.hits = 0
        self.misses = 0

    def set_bundles(self, bundles: BundleSet) -> bool:
        """Put ``bundles`` in force; returns True (and empties the cache) when their anchors changed."""
        if bundles == self._generation.bundles:
            return False
        # One reference swap: a verification already running finishes against, and caches into, the old one.
        self._generation = _Generation(bundles, profiles=self._profiles)
        return True

    @property
    def profile_hits(self) -> int:
        """How many chains the leaf-profile path verified under the bundles in force."""
        return self._generation.profile_hits

    def cache_len(self) -> int:
        """How many verified chains the cache holds."""
        return len(self._generation.cache)

    def verify(self, presented: Presented) -> VerifiedSvid:
        """Verify ``presented`` (leaf first, DER or parsed); raises :class:`SvidVerificationError`."""
        if not presented:
            raise SvidVerificationError(Refusal.NO_CERTIFICATE, "the peer presented no certificate")
        generation = self._generation
        now = self._clock()
        if not self._cache_size:
            leaf = presented[0]
            if len(presented) == 1 and isinstance(leaf, bytes):  # the usual peer: one leaf, in DER
                return _verify([_load(leaf, 0)], leaf, generation, now)
            leaf_der = leaf if isinstance(leaf, bytes) else leaf.public_bytes(_DER)
            return _verify(_parse(presented), leaf_der, generation, now)
        ders = [item if isinstance(item, bytes) else item.public_bytes(_DER) for item in presented]
        key = chain_digest(ders)
        with self._lock:
            cached = generation.cache.get(key)
            if cached is not None and now < cached.expires:
                self.hits += 1
                return cached
            self.misses += 1
        certs = _parse(presented)
        verified = _verify(certs, ders[0], generation, now)
        with self._lock:
            generation.cache[key] = verified
            while len(generation.cache) > self._cache_size:
                generation.cache.popitem(last=False)
        return verified


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _parse(presented: Presented) -> list[x509.Certificate]:
    return [
        item if isinstance(item, x509.Certificate) else _load(item, index)
        for index, item in enumerate(presented)
    ]


def _load(der: bytes, index: int) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError as err:
        raise SvidVerificationError(
            Refusal.MALFORMED, f"certificate {index} is not DER X.509"
        ) from err


def _verify(
    certs: list[x509.Certificate], leaf_der: bytes, generation: _Generation, now: datetime
) -> VerifiedSvid:
    leaf, intermediates = certs[0], certs[1:]
    profiles = not intermediates and generation.anchors
    if profiles:
        verified = _by_profile(leaf, leaf_der, generation, now)
        if verified is not None:
            return verified
    try:
        extensions = leaf.extensions
    except (ValueError, x509.DuplicateExtension) as err:
        raise SvidVerificationError(Refusal.MALFORMED, f"the leaf's extensions: {err}") from err
    spiffe_id = leaf_spiffe_id(leaf, extensions)
    claimed = str(spiffe_id)
    for index, cert in enumerate(certs):
        which = "the leaf" if index == 0 else f"certificate {index}"
        if now < cert.not_valid_before_utc:
            detail = f"{which} is valid from {cert.not_valid_before_utc.isoformat()}"
            raise SvidVerificationError(Refusal.NOT_YET_VALID, detail, spiffe_id=claimed)
        if now > cert.not_valid_after_utc:
            detail = f"{which} expired at {cert.not_valid_after_utc.isoformat()}"
            raise SvidVerificationError(Refusal.EXPIRED, detail, spiffe_id=claimed)
    trust_domain = spiffe_id.trust_domain
    verifier = generation.verifier(trust_domain, now)
    if verifier is None:
        detail = f"no X.509 bundle for trust domain {trust_domain}"
        raise SvidVerificationError(Refusal.UNKNOWN_TRUST_DOMAIN, detail, spiffe_id=claimed)
    try:
        path = verifier.verify(leaf, intermediates)
    except verification.VerificationError as err:
        detail = f"no path to the {trust_domain} bundle: {err}"
        raise SvidVerificationError(Refusal.BAD_CHAIN, detail, spiffe_id=claimed) from err
    chain = tuple(path.chain)
    if profiles and len(chain) == 2:
        _learn(leaf_der, chain[1], trust_domain, generation)
    expires = min(cert.not_valid_after_utc for cert in chain)
    return VerifiedSvid(spiffe_id, chain, expires)


def _learn(
    leaf_der: bytes, anchor: x509.Certificate, trust_domain: TrustDomain, generation: _Generation
) -> None:
    """Every rule passed for this leaf under ``anchor``: the next leaf of its template takes the fast path."""
    shape = leaf_shape(leaf_der)
    if shape is None:
        return
    for candidate in generation.anchors.get(shape.issuer, ()):
        if candidate.trust_domain == trust_domain and candidate.certificate == anchor:
            candidate.remember(shape.template)


def _by_profile(
    leaf: x509.Certificate, leaf_der: bytes, generation: _Generation, now: datetime
) -> VerifiedSvid | None:
    """The leaf verified by the leaf-profile path, or None when that path does not settle it (any doubt,
    any failed check: the full path then decides, and words the refusal)."""
    match = match_leaf(leaf_der, generation.anchors)
    if match is None or len(match.uris) != 1:
        return None
    uri = match.uris[0]
    known = spiffe_id = generation.ids.get(uri)
    if spiffe_id is None:
        try:
            spiffe_id = SpiffeId.parse(uri)
        except InvalidSpiffeIdError:
            return None
    anchor = match.anchor
    # The peer's own trust domain only: an anchor of another domain never vouches for this ID.
    if spiffe_id.is_root or spiffe_id.trust_domain.name != anchor.trust_domain.name:
        return None
    not_after = leaf.not_valid_after_utc
    if now < leaf.not_valid_before_utc or now > not_after:
        return None
    if not anchor.signed(match, leaf.signature, now):
        return None
    if known is None:
        # Only an ID an anchor signed is remembered, so a peer cannot fill this with names of its own; bounded.
        if len(generation.ids) >= _MAX_IDS:
            generation.ids.clear()
        generation.ids[uri] = spiffe_id
    generation.profile_hits += 1
    return VerifiedSvid(spiffe_id, (leaf, anchor.certificate), min(not_after, anchor.not_after))
