"""The leaf-profile path of peer verification answers exactly what path validation answers, and forgets on change."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from sigil_testing.clock import FakeClock
from sigil_testing.pki import NOW, Domain, bad_leaf, bundles

from sigil.enforcer.errors import SvidVerificationError
from sigil.enforcer.verify import Refusal, SvidVerifier, VerifiedSvid
from sigil.enforcer.verify_profile import leaf_shape

_DER = serialization.Encoding.DER


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def domain() -> Domain:
    return Domain("example.org")


def _outcome(verifier: SvidVerifier, chain: list[bytes]) -> VerifiedSvid | Refusal:
    try:
        return verifier.verify(chain)
    except SvidVerificationError as err:
        return Refusal(err.reason)


def _pair(domain: Domain, clock: FakeClock) -> tuple[SvidVerifier, SvidVerifier]:
    """A verifier with the leaf-profile path and one without, neither caching chains."""
    trusted = bundles(domain)
    return (
        SvidVerifier(trusted, clock=clock, cache_size=0),
        SvidVerifier(trusted, clock=clock, cache_size=0, leaf_profiles=False),
    )


def _forged(der: bytes) -> bytes:
    """``der`` with the last octet of its signature changed: same shape, signature no longer valid."""
    return der[:-1] + bytes([der[-1] ^ 0x01])


def test_new_leaves_of_a_known_profile_verify_as_path_validation_does(
    domain: Domain, clock: FakeClock
) -> None:
    """After one leaf, leaves of the same template verify by profile with the very same result."""
    fast, full = _pair(domain, clock)
    first = domain.mint("ns", "shop", "sa", "web").ders
    assert _outcome(fast, first) == _outcome(full, first)
    for name in ("api", "db", "cache"):
        chain = domain.mint("ns", "shop", "sa", name).ders
        shape = leaf_shape(chain[0])
        assert shape is not None
        assert shape.uris == (f"spiffe://example.org/ns/shop/sa/{name}",)
        assert _outcome(fast, chain) == _outcome(full, chain)
    assert (fast.profile_hits, full.profile_hits) == (3, 0)


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"ca": True}, Refusal.CA_LEAF),
        ({"key_cert_sign": True}, Refusal.KEY_CERT_SIGN),
        ({"digital_signature": False}, Refusal.BAD_KEY_USAGE),
        ({"eku": (ExtendedKeyUsageOID.SERVER_AUTH,)}, Refusal.BAD_KEY_USAGE),
        ({"uris": ()}, Refusal.NO_URI_SAN),
        ({"uris": ("spiffe://example.org/a", "spiffe://example.org/b")}, Refusal.MULTIPLE_URI_SANS),
        ({"uris": ("spiffe://example.org",)}, Refusal.ROOT_SPIFFE_ID),
        ({"uris": ("https://example.org/x",)}, Refusal.INVALID_SPIFFE_ID),
        ({"uris": ("spiffe://other.example/x",)}, Refusal.UNKNOWN_TRUST_DOMAIN),
    ],
)
def test_a_broken_leaf_is_refused_alike_after_a_good_one_of_its_template(
    domain: Domain, clock: FakeClock, options: dict[str, object], reason: Refusal
) -> None:
    """With the good leaf's profile known, a leaf breaking one rule is still refused, for the same reason."""
    fast, full = _pair(domain, clock)
    good = [bad_leaf(domain).public_bytes(_DER)]
    assert isinstance(_outcome(fast, good), VerifiedSvid)
    broken = [bad_leaf(domain, **options).public_bytes(_DER)]  # type: ignore[arg-type]
    assert _outcome(fast, broken) == _outcome(full, broken) == reason
    assert fast.profile_hits == 0


def test_a_forged_signature_on_a_known_profile_is_refused(domain: Domain, clock: FakeClock) -> None:
    """A leaf of a profile already seen whose signature does not verify is refused as a bad chain."""
    fast, full = _pair(domain, clock)
    assert isinstance(_outcome(fast, domain.mint("web").ders), VerifiedSvid)
    forged = [_forged(domain.mint("api").ders[0])]
    assert _outcome(fast, forged) == _outcome(full, forged) == Refusal.BAD_CHAIN


def test_validity_is_checked_for_every_leaf(domain: Domain, clock: FakeClock) -> None:
    """A leaf of a known profile outside its validity is refused as expired or not yet valid."""
    fast, full = _pair(domain, clock)
    assert isinstance(_outcome(fast, domain.mint("web").ders), VerifiedSvid)
    early = domain.mint("api", now=NOW + timedelta(minutes=10)).ders
    short = domain.mint("db", ttl=timedelta(minutes=5)).ders
    assert _outcome(fast, early) == _outcome(full, early) == Refusal.NOT_YET_VALID
    clock.advance(timedelta(minutes=6))
    assert _outcome(fast, short) == _outcome(full, short) == Refusal.EXPIRED


def test_a_workloads_next_leaves_are_judged_whole_though_its_id_is_known(
    domain: Domain, clock: FakeClock
) -> None:
    """Leaves naming an ID verified before (the verifier remembers its parse) are still checked in full each time."""
    fast, full = _pair(domain, clock)
    for _ in range(
        2
    ):  # the second leaf of one template and ID takes the profile path with the ID remembered
        assert isinstance(_outcome(fast, domain.mint("web").ders), VerifiedSvid)
    assert fast.profile_hits == 1
    forged = [_forged(domain.mint("web").ders[0])]
    early = domain.mint("web", now=NOW + timedelta(minutes=10)).ders
    short = domain.mint("web", ttl=timedelta(minutes=5)).ders
    assert _outcome(fast, forged) == _outcome(full, forged) == Refusal.BAD_CHAIN
    assert _outcome(fast, early) == _outcome(full, early) == Refusal.NOT_YET_VALID
    clock.advance(timedelta(minutes=6))
    assert _outcome(fast, short) == _outcome(full, short) == Refusal.EXPIRED
    renewed = domain.mint("web", now=NOW + timedelta(minutes=6)).ders
    verified = _outcome(fast, renewed)
    assert isinstance(verified, VerifiedSvid)
    assert verified == _outcome(full, renewed)
    assert str(verified.spiffe_id) == "spiffe://example.org/web"
    assert fast.profile_hits == 2


def test_a_bundle_change_forgets_the_profiles(domain: Domain, clock: FakeClock) -> None:
    """Once the domain's anchor is replaced, a leaf of the old anchor's profile is refused."""
    fast, _ = _pair(domain, clock)
    assert isinstance(_outcome(fast, domain.mint("web").ders), VerifiedSvid)
    old = domain.mint("api").ders
    assert isinstance(_outcome(fast, domain.mint("db").ders), VerifiedSvid)
    assert fast.profile_hits == 1
    assert fast.set_bundles(bundles(Domain("example.org")))
    assert _outcome(fast, old) == Refusal.BAD_CHAIN


def test_dates_from_2050_leave_the_profile_path(domain: Domain) -> None:
    """A leaf whose dates are GeneralizedTime (2050 on) has no profile: path validation judges it alone."""
    long_lived = bad_leaf(domain, not_after=NOW.replace(year=2051))
    assert leaf_shape(long_lived.public_bytes(_DER)) is None
    assert leaf_shape(b"\x30\x03\x02\x01") is None


def test_an_anchor_never_vouches_for_another_domains_id_by_profile(clock: FakeClock) -> None:
    """A leaf of a known template from one domain's authority naming a federated domain's ID is refused."""
    home, partner = Domain("example.org"), Domain("partner.example")
    trusted = bundles(home, partner)
    fast = SvidVerifier(trusted, clock=clock, cache_size=0)
    full = SvidVerifier(trusted, clock=clock, cache_size=0, leaf_profiles=False)
    assert isinstance(_outcome(fast, [bad_leaf(home).public_bytes(_DER)]), VerifiedSvid)
    crossed = [bad_leaf(home, uris=("spiffe://partner.example/x",)).public_bytes(_DER)]
    assert _outcome(fast, crossed) == _outcome(full, crossed) == Refusal.BAD_CHAIN
    assert fast.profile_hits == 0
