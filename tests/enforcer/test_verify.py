"""Peer chain verification: every refusal with its reason, per-domain bundles, and the cache."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from sigil_testing.ca import write_upstream_ca
from sigil_testing.clock import FakeClock
from sigil_testing.pki import NOW, Domain, bad_leaf, bundles

from sigil.ca.bundle import TrustBundle
from sigil.ca.upstream import load_upstream_ca
from sigil.enforcer.bundles import BundleSet
from sigil.enforcer.errors import SvidVerificationError
from sigil.enforcer.verify import Refusal, SvidVerifier


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def domain() -> Domain:
    return Domain("example.org")


def _refusal(verifier: SvidVerifier, chain: object) -> SvidVerificationError:
    with pytest.raises(SvidVerificationError) as caught:
        verifier.verify(chain)  # type: ignore[arg-type]
    return caught.value


# --------------------------------------------------------------------------- accepted


def test_a_valid_svid_yields_its_spiffe_id(domain: Domain, clock: FakeClock) -> None:
    """A chain minted by the domain's CA verifies and names the workload's SPIFFE ID."""
    issued = domain.mint("ns", "shop", "sa", "web")
    verified = SvidVerifier(bundles(domain), clock=clock).verify(issued.ders)
    assert str(verified.spiffe_id) == "spiffe://example.org/ns/shop/sa/web"
    assert verified.chain[-1] == domain.authority.certificate
    assert verified.expires == issued.svid.not_after


def test_parsed_certificates_are_accepted_as_well_as_der(domain: Domain, clock: FakeClock) -> None:
    """A chain handed over as cryptography certificates verifies like its DER form."""
    issued = domain.mint("api")
    verified = SvidVerifier(bundles(domain), clock=clock).verify(issued.chain)
    assert verified.spiffe_id == domain.id("api")


def test_an_upstream_anchored_chain_verifies_through_its_intermediates(tmp_path: Path) -> None:
    """An SVID whose authority sits under an operator's CA verifies when the intermediates are presented."""
    files = write_upstream_ca(tmp_path / "upstream")  # dated from the real clock
    clock = FakeClock()
    domain = Domain("example.org", now=clock(), upstream=load_upstream_ca(files.directory))
    issued = domain.mint("api")
    assert len(issued.chain) == 3
    verified = SvidVerifier(bundles(domain), clock=clock).verify(issued.ders)
    assert verified.chain[-1] == files.root
    refused = _refusal(SvidVerifier(bundles(domain), clock=clock), issued.ders[:1])
    assert refused.reason == Refusal.BAD_CHAIN


# --------------------------------------------------------------------------- refusals


def test_an_expired_svid_is_refused_as_expired(domain: Domain, clock: FakeClock) -> None:
    """A leaf past its notAfter is refused with reason 'expired'."""
    issued = domain.mint("api", ttl=timedelta(minutes=5))
    clock.advance(timedelta(minutes=6))
    err = _refusal(SvidVerifier(bundles(domain), clock=clock), issued.ders)
    assert err.reason == Refusal.EXPIRED
    assert err.spiffe_id == "spiffe://example.org/api"


def test_a_future_svid_is_refused_as_not_yet_valid(domain: Domain, clock: FakeClock) -> None:
    """A leaf whose notBefore is ahead of the clock is refused with reason 'not_yet_valid'."""
    issued = domain.mint("api", now=NOW + timedelta(minutes=30))
    err = _refusal(SvidVerifier(bundles(domain), clock=clock), issued.ders)
    assert err.reason == Refusal.NOT_YET_VALID


def test_a_domain_without_a_bundle_is_unknown(domain: Domain, clock: FakeClock) -> None:
    """A peer of a trust domain the enforcer holds no bundle for is refused as 'unknown_trust_domain'."""
    other = Domain("other.org")
    err = _refusal(SvidVerifier(bundles(domain), clock=clock), other.mint("api").ders)
    assert err.reason == Refusal.UNKNOWN_TRUST_DOMAIN
    assert "other.org" in err.detail


def test_a_domain_with_an_empty_bundle_is_unknown(domain: Domain, clock: FakeClock) -> None:
    """A bundle without X.509 authorities trusts nobody (SPIFFE_Trust_Domain_and_Bundle.md §4.1)."""
    empty = BundleSet.of(TrustBundle(domain.trust_domain))
    err = _refusal(SvidVerifier(empty, clock=clock), domain.mint("api").ders)
    assert err.reason == Refusal.UNKNOWN_TRUST_DOMAIN


def test_two_uri_sans_are_refused(domain: Domain, clock: FakeClock) -> None:
    """A leaf with two URI SANs is refused with reason 'multiple_uri_sans'."""
    leaf = bad_leaf(domain, uris=("spiffe://example.org/a", "spiffe://example.org/b"))
    err = _refusal(SvidVerifier(bundles(domain), clock=clock), [leaf])
    assert err.reason == Refusal.MULTIPLE_URI_SANS


def test_no_uri_san_is_refused(domain: Domain, clock: FakeClock) -> None:
    """A leaf without a URI SAN is refused with reason 'no_uri_san'."""
    err = _refusal(SvidVerifier(bundles(domain), clock=clock), [bad_leaf(domain, uris=())])
    assert err.reason == Refusal.NO_URI_SAN


def test_a_non_spiffe_uri_is_refused(domain: Domain, clock: FakeClock) -> None:
    """A URI SAN that is not a SPIFFE ID is refused with the rule it breaks."""
    leaf = bad_leaf(domain, uris=("https://example.org/api",))
    err = _refusal(SvidVerifier(bundles(domain), clock=clock), [leaf])
    assert err.reason == Refusal.INVALID_SPIFFE_ID
    assert "scheme" in err.detail


def test_a_ca_certificate_as_leaf_is_refused(domain: Domain, clock: FakeClock) -> None:
    """The authority's own certificate presented as a leaf is refused with reason 'ca_leaf'."""
    authority = domain.authority.certificate
    err = _refusal(SvidVerifier(bundles(domain), clock=clock), [authority])
    assert err.reason == Refusal.CA_LEAF


def test_key_cert_sign_on_the_leaf_is_refused(domain: Domain, clock: FakeClock) -> None:
    """A non-CA leaf that may sign certificates is refused with reason 'key_cert_sign'."""
    err = _refusal(
        SvidVerifier(bundles(domain), clock=clock), [bad_leaf(domain, key_cert_sign=True)]
    )
    assert err.reason == Refusal.KEY_CERT_SIGN


def test_a_root_spiffe_id_is_refused(domain: Domain, clock: FakeClock) -> None:
    """A leaf naming the trust domain itself (no path) is refused with reason 'root_spiffe_id'."""
    leaf = bad_leaf(domain, uris=("spiffe://example.org",))
    err = _refusal(SvidVerifier(bundles(domain), clock=clock), [leaf])
    assert err.reason == Refusal.ROOT_SPIFFE_ID


@pytest.mark.parametrize(
    "broken",
    [
        {"digital_signature": False},
        {"eku": (ExtendedKeyUsageOID.SERVER_AUTH,)},
    ],
    ids=["no-digital-signature", "server-auth-only"],
)
def test_wrong_key_usages_are_refused(
    domain: Domain, clock: FakeClock, broken: dict[str, object]
) -> None:
    """A leaf without digitalSignature, or with EKUs lacking clientAuth, is refused as 'bad_key_usage'."""
    err = _refusal(SvidVerifier(bundles(domain), clock=clock), [bad_leaf(domain, **broken)])  # type: ignore[arg-type]
    assert err.reason == Refusal.BAD_KEY_USAGE


def test_a_chain_signed_by_a_stranger_is_a_bad_chain(domain: Domain, clock: FakeClock) -> None:
    """A leaf claiming our domain but signed by another CA is refused with reason 'bad_chain'."""
    impostor = Domain("example.org")
    err = _refusal(SvidVerifier(bundles(domain), clock=clock), impostor.mint("api").ders)
    assert err.reason == Refusal.BAD_CHAIN


def test_nothing_presented_is_refused(domain: Domain, clock: FakeClock) -> None:
    """An empty chain (a peer without a certificate) is refused with reason 'no_certificate'."""
    err = _refusal(SvidVerifier(bundles(domain), clock=clock), [])
    assert err.reason == Refusal.NO_CERTIFICATE


def test_garbage_is_refused_as_malformed(domain: Domain, clock: FakeClock) -> None:
    """Bytes that are not a DER certificate are refused with reason 'malformed'."""
    err = _refusal(SvidVerifier(bundles(domain), clock=clock), [b"\x30\x03\x02\x01\x00"])
    assert err.reason == Refusal.MALFORMED


# --------------------------------------------------------------------------- federation


def test_a_federated_peer_verifies_against_its_own_bundle(domain: Domain, clock: FakeClock) -> None:
    """A peer of a federated domain verifies with that domain's bundle."""
    partner = Domain("partner.net")
    verifier = SvidVerifier(bundles(domain, partner), clock=clock)
    assert verifier.verify(partner.mint("billing").ders).spiffe_id == partner.id("billing")
    assert verifier.verify(domain.mint("web").ders).spiffe_id == domain.id("web")


def test_a_domain_b_peer_signed_by_domain_a_is_refused(domain: Domain, clock: FakeClock) -> None:
    """Domain A's CA cannot vouch for an identity in domain B, even though A is trusted: no pooled bundle."""
    partner = Domain("partner.net")
    forged = domain.mint(spiffe_id=partner.id("billing"))
    err = _refusal(SvidVerifier(bundles(domain, partner), clock=clock), forged.ders)
    assert err.reason == Refusal.BAD_CHAIN
    assert err.spiffe_id == "spiffe://partner.net/billing"


# --------------------------------------------------------------------------- the cache


def test_a_repeated_chain_is_answered_from_the_cache(domain: Domain, clock: FakeClock) -> None:
    """The second verification of the same chain is a cache hit with the same answer."""
    verifier = SvidVerifier(bundles(domain), clock=clock)
    issued = domain.mint("api")
    first = verifier.verify(issued.ders)
    second = verifier.verify(issued.ders)
    assert second is first
    assert (verifier.hits, verifier.misses) == (1, 1)


def test_a_cached_chain_expires_with_its_leaf(domain: Domain, clock: FakeClock) -> None:
    """Once the leaf's notAfter passes, the cached answer is not used and the chain is refused."""
    verifier = SvidVerifier(bundles(domain), clock=clock)
    issued = domain.mint("api", ttl=timedelta(minutes=5))
    verifier.verify(issued.ders)
    clock.advance(timedelta(minutes=5, seconds=1))
    assert _refusal(verifier, issued.ders).reason == Refusal.EXPIRED


def test_a_bundle_change_empties_the_cache(domain: Domain, clock: FakeClock) -> None:
    """After the domain's authority leaves the bundle, its cached peers are refused."""
    verifier = SvidVerifier(bundles(domain), clock=clock)
    issued = domain.mint("api")
    verifier.verify(issued.ders)
    assert verifier.set_bundles(bundles(Domain("example.org")))
    assert verifier.cache_len() == 0
    assert _refusal(verifier, issued.ders).reason == Refusal.BAD_CHAIN


def test_the_same_bundles_again_keep_the_cache(domain: Domain, clock: FakeClock) -> None:
    """A source re-sending identical bundles leaves the cache warm."""
    verifier = SvidVerifier(bundles(domain), clock=clock)
    verifier.verify(domain.mint("api").ders)
    assert not verifier.set_bundles(bundles(domain))
    assert verifier.cache_len() == 1


def test_the_cache_is_bounded(domain: Domain, clock: FakeClock) -> None:
    """The cache holds at most cache_size chains, dropping the oldest first."""
    verifier = SvidVerifier(bundles(domain), clock=clock, cache_size=2)
    chains = [domain.mint(f"w{n}").ders for n in range(3)]
    for chain in chains:
        verifier.verify(chain)
    assert verifier.cache_len() == 2
    verifier.verify(chains[2])
    verifier.verify(chains[0])
    assert (verifier.hits, verifier.misses) == (1, 4)


def test_bundle_sets_compare_by_anchors() -> None:
    """Two bundle sets with the same anchors are equal; a changed anchor changes the digest."""
    domain = Domain("example.org")
    pem = domain.bundle.x509_authorities[0].public_bytes(serialization.Encoding.PEM)
    reparsed = BundleSet.of(TrustBundle.parse_pem(domain.trust_domain, pem))
    assert reparsed == bundles(domain)
    assert bundles(Domain("example.org")).digest != reparsed.digest
