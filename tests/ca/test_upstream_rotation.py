"""An upstream root rotation on the CA: both roots in the bundle while anything chains to the old one, then only
the new one; replicas (two CAs on one database, SQLite and the PostgreSQL the suite starts) agree on the upstream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from sigil_testing.ca import open_ca, openssl, write_upstream_ca
from sigil_testing.clock import FakeClock

from sigil.ca.authority import AuthorityKind, AuthorityStatus
from sigil.ca.datastore.upstreams import UpstreamStatus
from sigil.ca.errors import UpstreamAuthorityError, UpstreamInUseError
from sigil.ca.rotation import activation_time
from sigil.ca.service import CertificateAuthority
from sigil.ca.spiffe_id import SpiffeId
from sigil.ca.upstream_verbs import UpstreamVerbs
from sigil.ca.x509svid import X509Svid

WORKLOAD = SpiffeId.parse("spiffe://example.org/web")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    if request.param == "sqlite":
        return ""
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def replicas(
    tmp_path: Path, database_url: str
) -> AsyncIterator[tuple[CertificateAuthority, CertificateAuthority, FakeClock]]:
    clock = FakeClock()
    old = write_upstream_ca(tmp_path / "old")
    extra: dict[str, object] = {"upstream_dir": old.directory}
    if database_url:
        extra["database_url"] = database_url
    else:
        extra["database_url"] = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    first = await open_ca(tmp_path / "one", clock, key_dir=tmp_path / "keys", **extra)
    second = await open_ca(tmp_path / "two", clock, key_dir=tmp_path / "keys", **extra)
    try:
        yield first, second, clock
    finally:
        await first.aclose()
        await second.aclose()


def _verifies(svid: X509Svid, bundle_pem: bytes, where: Path) -> str:
    """openssl's verdict on an SVID's chain against the bundle's anchors (an independent verifier)."""
    pem = serialization.Encoding.PEM
    (where / "bundle.pem").write_bytes(bundle_pem)
    (where / "leaf.pem").write_bytes(svid.leaf.public_bytes(pem))
    (where / "chain.pem").write_bytes(b"".join(c.public_bytes(pem) for c in svid.chain[1:]))
    done = openssl(
        "verify", "-CAfile", "bundle.pem", "-untrusted", "chain.pem", "leaf.pem", cwd=where
    )
    return done.stdout + done.stderr


async def test_both_roots_stay_in_the_bundle_until_nothing_chains_to_the_old_one(
    replicas: tuple[CertificateAuthority, CertificateAuthority, FakeClock], tmp_path: Path
) -> None:
    """Prepare adds the new root, activate signs under it and taints the old authority, retire refuses while an
    SVID under the old root is unreplaced and drops the old root once it is; openssl agrees at every step."""
    ca, replica, _ = replicas
    verbs = UpstreamVerbs(ca)
    old_root = ca.bundle().x509_authorities
    before = await ca.mint_x509_svid(WORKLOAD, holder="agent-a")
    new = write_upstream_ca(tmp_path / "new")

    await verbs.prepare(new.directory)
    assert set(ca.bundle().x509_authorities) == {*old_root, new.root}
    assert (await ca.mint_x509_svid(WORKLOAD)).chain[-1].issuer == old_root[0].subject

    _, tainted = await verbs.activate()
    assert list(tainted.values()) == [2]  # both SVIDs minted under the old root are due
    await replica.refresh()
    after = await replica.mint_x509_svid(WORKLOAD, holder="agent-a")
    assert after.chain[2] == new.intermediate
    assert set(replica.bundle().x509_authorities) == {*old_root, new.root}
    both = ca.bundle().to_pem()
    assert "leaf.pem: OK" in _verifies(before, both, tmp_path)
    assert "leaf.pem: OK" in _verifies(after, both, tmp_path)

    with pytest.raises(UpstreamInUseError, match="not retired: 1 unexpired SVID") as refused:
        await verbs.retire()
    assert refused.value.holders == {"": 1}
    assert set(ca.bundle().x509_authorities) == {*old_root, new.root}

    retired = await verbs.retire(force=True)
    assert retired.cut.count == 1
    assert ca.bundle().x509_authorities == (new.root,)
    only_new = ca.bundle().to_pem()
    assert "leaf.pem: OK" in _verifies(after, only_new, tmp_path)
    assert "leaf.pem: OK" not in _verifies(before, only_new, tmp_path)
    await replica.refresh()
    assert replica.bundle().x509_authorities == (new.root,)
    statuses = [(v.record.status, len(v.authorities)) for v in await verbs.show()]
    assert [s for s, _ in statuses] == [UpstreamStatus.RETIRED, UpstreamStatus.ACTIVE]


async def test_a_replicas_scheduled_rotation_prepares_under_the_upstream_the_datastore_names(
    replicas: tuple[CertificateAuthority, CertificateAuthority, FakeClock], tmp_path: Path
) -> None:
    """After one replica activates a new upstream, the other replica's next authority is signed under it too."""
    ca, replica, clock = replicas
    new = write_upstream_ca(tmp_path / "new")
    await UpstreamVerbs(ca).prepare(new.directory)
    await UpstreamVerbs(ca).activate()
    clock.advance(ca.settings.ca_ttl / 2)
    await replica.rotate()
    prepared = [
        a for a in replica.authorities(AuthorityKind.X509) if a.status is AuthorityStatus.PREPARED
    ]
    assert [a.upstream_root for a in prepared] == [new.root]


async def test_prepare_refuses_the_root_in_use_and_a_broken_set(
    replicas: tuple[CertificateAuthority, CertificateAuthority, FakeClock], tmp_path: Path
) -> None:
    """A rotation needs a new root, and files that do not cross-check are refused before anything changes."""
    ca, _, _ = replicas
    verbs = UpstreamVerbs(ca)
    with pytest.raises(UpstreamAuthorityError, match="has the root of the upstream in use"):
        await verbs.prepare(tmp_path / "old")
    broken = write_upstream_ca(tmp_path / "broken")
    (broken.directory / "root-cert.pem").write_bytes(
        (tmp_path / "old" / "root-cert.pem").read_bytes()
    )
    with pytest.raises(UpstreamAuthorityError, match="is not signed by"):
        await verbs.prepare(broken.directory)
    with pytest.raises(UpstreamAuthorityError, match="absolute path"):
        await verbs.prepare(Path("relative/dir"))
    assert len(ca.bundle().x509_authorities) == 1


async def test_activate_after_the_schedule_already_activated_the_new_authority_still_taints_the_old(
    replicas: tuple[CertificateAuthority, CertificateAuthority, FakeClock], tmp_path: Path
) -> None:
    """If the scheduled rotation activates the authority under the new root first, ``activate`` keeps it and
    still taints the old authority, so nothing stays unmarked under the old root."""
    ca, _, clock = replicas
    verbs = UpstreamVerbs(ca)
    old_id = ca.signer(AuthorityKind.X509).authority.authority_id
    new = write_upstream_ca(tmp_path / "new")
    prepared = await verbs.prepare(new.directory)
    clock.advance(activation_time(ca.signer(AuthorityKind.X509).authority) - clock())
    await ca.mint_x509_svid(WORKLOAD, holder="agent-a")  # unexpired when the taint comes
    await ca.rotate()
    assert ca.signer(AuthorityKind.X509).authority.authority_id == prepared.authority_id
    active, tainted = await verbs.activate()
    assert (active.authority_id, tainted) == (prepared.authority_id, {old_id: 1})


async def test_a_second_prepare_replaces_the_first_new_root(
    replicas: tuple[CertificateAuthority, CertificateAuthority, FakeClock], tmp_path: Path
) -> None:
    """Preparing another new upstream before activating drops the first one's root from the bundle again."""
    ca, _, _ = replicas
    verbs = UpstreamVerbs(ca)
    (old_root,) = ca.bundle().x509_authorities
    first = write_upstream_ca(tmp_path / "first")
    second = write_upstream_ca(tmp_path / "second")
    await verbs.prepare(first.directory)
    await verbs.prepare(second.directory)
    assert set(ca.bundle().x509_authorities) == {old_root, second.root}
    shown = [(v.record.directory, v.record.status) for v in await verbs.show()]
    assert shown == [
        (tmp_path / "old", UpstreamStatus.ACTIVE),
        (second.directory, UpstreamStatus.PREPARED),
    ]


async def test_a_self_signed_ca_has_no_upstream_to_rotate(tmp_path: Path) -> None:
    """Without ``ca.upstream_dir`` there is no upstream root: prepare says so and changes nothing."""
    ca = await open_ca(tmp_path / "d", FakeClock())
    try:
        before = ca.bundle().x509_authorities
        new = write_upstream_ca(tmp_path / "new")
        with pytest.raises(UpstreamAuthorityError, match=r"ca.upstream_dir: is not set"):
            await UpstreamVerbs(ca).prepare(new.directory)
        assert ca.bundle().x509_authorities == before
        assert await UpstreamVerbs(ca).show() == []
    finally:
        await ca.aclose()
