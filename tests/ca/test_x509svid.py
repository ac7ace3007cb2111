"""Minted X509-SVIDs meet every leaf rule of the X509-SVID standard and verify with standard tools."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from sigil_testing.ca import make_csr, open_ca, openssl, write_upstream_ca
from sigil_testing.clock import FakeClock
from spiffe import TrustDomain as PyTrustDomain
from spiffe import X509Bundle, X509Svid

from sigil.ca import InvalidSpiffeIdError, SpiffeId
from sigil.ca.authority import AuthorityKind
from sigil.ca.keys import KeyType, private_key_der
from sigil.ca.service import CertificateAuthority, X509Request
from sigil.ca.x509svid import X509Svid as MintedSvid
from sigil.ca.x509svid import certificate_pem

WEB = SpiffeId.parse("spiffe://example.org/ns/default/sa/web")


async def test_leaf_meets_every_x509_svid_rule(ca: CertificateAuthority, clock: FakeClock) -> None:
    """The leaf has one URI SAN, critical KeyUsage without CA bits, cA=false, both EKUs, SKID/AKID."""
    csr, _ = make_csr()
    leaf = (await ca.mint_x509_svid(WEB, csr=csr, dns_names=["web.default.svc"])).leaf
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == [str(WEB)]
    assert sans.get_values_for_type(x509.DNSName) == ["web.default.svc"]
    key_usage = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert key_usage.critical
    assert key_usage.value.digital_signature
    assert not key_usage.value.key_cert_sign
    assert not key_usage.value.crl_sign
    basic = leaf.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.value.ca is False
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku
    signer_cert = ca.signer(AuthorityKind.X509).authority.certificate
    assert signer_cert is not None
    ski = leaf.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(leaf.public_key())
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    signer_ski = signer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == signer_ski.digest
    assert leaf.issuer == signer_cert.subject


async def test_serials_are_random_128_bit_and_not_before_is_backdated(
    ca: CertificateAuthority, clock: FakeClock
) -> None:
    """Serials are large, positive and distinct; notBefore lies a few seconds before issuance."""
    csr, _ = make_csr()
    leaves = [(await ca.mint_x509_svid(WEB, csr=csr)).leaf for _ in range(5)]
    serials = {leaf.serial_number for leaf in leaves}
    assert len(serials) == 5
    assert all(96 < s.bit_length() <= 128 for s in serials)
    for leaf in leaves:
        backdated = clock() - leaf.not_valid_before_utc
        assert timedelta(seconds=1) <= backdated <= timedelta(seconds=60)
        assert leaf.not_valid_after_utc == clock() + timedelta(hours=1)


async def test_identity_comes_from_the_ca_not_the_csr(ca: CertificateAuthority) -> None:
    """A CSR asking for another SPIFFE ID and subject gets exactly the identity the CA decided."""
    csr, _ = make_csr(uri="spiffe://example.org/admin")
    leaf = (await ca.mint_x509_svid(WEB, csr=csr)).leaf
    uris = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert uris.get_values_for_type(x509.UniformResourceIdentifier) == [str(WEB)]
    assert "asked-for" not in leaf.subject.rfc4514_string()


async def test_not_after_is_capped_at_the_signers(
    ca: CertificateAuthority, clock: FakeClock
) -> None:
    """A TTL longer than the authority has left is cut to the authority's own end."""
    csr, _ = make_csr()
    clock.advance(timedelta(hours=23))
    svid = await ca.mint_x509_svid(WEB, csr=csr, ttl=timedelta(hours=10))
    signer = ca.signer(AuthorityKind.X509).authority
    assert svid.not_after <= signer.not_after


async def test_root_ids_are_refused(ca: CertificateAuthority) -> None:
    """An SVID for the trust domain's own ID (no path) is refused, naming the rule."""
    csr, _ = make_csr()
    with pytest.raises(InvalidSpiffeIdError, match="must have a path"):
        await ca.mint_x509_svid(SpiffeId.parse("spiffe://example.org"), csr=csr)


async def test_openssl_verifies_the_chain_against_the_bundle(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    """`openssl verify` accepts the minted chain against the PEM bundle, for client and server use."""
    csr, _ = make_csr()
    svid = await ca.mint_x509_svid(WEB, csr=csr)
    (tmp_path / "bundle.pem").write_bytes(ca.bundle().to_pem())
    (tmp_path / "svid.pem").write_bytes(svid.chain_pem())
    for purpose in ("sslclient", "sslserver"):
        result = openssl(
            "verify", "-purpose", purpose, "-CAfile", "bundle.pem", "svid.pem", cwd=tmp_path
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "svid.pem: OK" in result.stdout


async def test_py_spiffe_parses_what_we_mint(ca: CertificateAuthority) -> None:
    """py-spiffe's X509Svid and X509Bundle accept the SVID, its key and the bundle."""
    csr, key = make_csr()
    svid = await ca.mint_x509_svid(WEB, csr=csr)
    parsed = X509Svid.parse_raw(svid.chain_der(), private_key_der(key))
    assert str(parsed.spiffe_id) == str(WEB)
    bundle = X509Bundle.parse_raw(PyTrustDomain("example.org"), ca.bundle().x509_der())
    assert len(bundle.x509_authorities) == 1


@pytest.mark.parametrize("key_type", [KeyType.EC_P384, KeyType.RSA_2048])
async def test_other_key_types_sign_valid_svids(tmp_path: Path, key_type: KeyType) -> None:
    """P-384 and RSA-2048 authorities mint SVIDs that openssl accepts."""
    ca = await open_ca(tmp_path / "d", FakeClock(), key_type=key_type, jwt_key_type=key_type)
    try:
        csr, _ = make_csr()
        svid = await ca.mint_x509_svid(WEB, csr=csr)
        (tmp_path / "b.pem").write_bytes(ca.bundle().to_pem())
        (tmp_path / "s.pem").write_bytes(svid.chain_pem())
        result = openssl("verify", "-CAfile", "b.pem", "s.pem", cwd=tmp_path)
        assert result.returncode == 0
        jwt = await ca.mint_jwt_svid(WEB, audience=["a"])
        assert jwt.token.count(".") == 2
    finally:
        await ca.aclose()


async def test_ca_generated_key_comes_back_with_the_svid(ca: CertificateAuthority) -> None:
    """Minting without a CSR (``x509 mint``) returns a key that matches the leaf."""
    svid = await ca.mint_x509_svid(WEB)
    assert svid.private_key is not None
    public = svid.private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert public == svid.leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


async def test_intermediate_under_an_upstream_ca(tmp_path: Path) -> None:
    """Under an upstream CA, the upstream root anchors the bundle and SVIDs carry the intermediate chain."""
    upstream = write_upstream_ca(tmp_path / "upstream")
    ca = await open_ca(tmp_path / "d", FakeClock(), upstream_dir=upstream.directory)
    try:
        csr, key = make_csr()
        svid = await ca.mint_x509_svid(WEB, csr=csr)
        assert ca.bundle().x509_authorities == (upstream.root,)
        assert len(svid.chain) == 3
        assert svid.chain[2] == upstream.intermediate
        sigil_cert = svid.chain[1]
        assert sigil_cert.issuer == upstream.intermediate.subject
        san = sigil_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://example.org"]
        (tmp_path / "root.pem").write_bytes(ca.bundle().to_pem())
        (tmp_path / "leaf.pem").write_bytes(svid.chain[0].public_bytes(serialization.Encoding.PEM))
        (tmp_path / "chain.pem").write_bytes(
            b"".join(c.public_bytes(serialization.Encoding.PEM) for c in svid.chain[1:])
        )
        result = openssl(
            "verify", "-CAfile", "root.pem", "-untrusted", "chain.pem", "leaf.pem", cwd=tmp_path
        )
        assert result.returncode == 0, result.stderr
        parsed = X509Svid.parse_raw(svid.chain_der(), private_key_der(key))
        assert len(parsed.cert_chain) == 3
        _assert_encodings_match_the_certificates(svid)
    finally:
        await ca.aclose()


def _assert_encodings_match_the_certificates(svid: MintedSvid) -> None:
    """What the SVID says without parsing (serial, expiry, DER, PEM) is what its certificates say."""
    assert svid.serial == svid.leaf.serial_number
    assert svid.serial_hex == format(svid.leaf.serial_number, "032x")
    assert svid.not_after == svid.leaf.not_valid_after_utc
    assert svid.chain_der() == b"".join(
        c.public_bytes(serialization.Encoding.DER) for c in svid.chain
    )
    assert svid.chain_pem() == b"".join(
        c.public_bytes(serialization.Encoding.PEM) for c in svid.chain
    )


async def test_svids_carry_their_certificates_encodings(
    ca: CertificateAuthority, clock: FakeClock
) -> None:
    """Serial, expiry, DER and PEM come from minting, and match the certificate, also at odd microseconds."""
    clock.advance(timedelta(microseconds=654_321))
    csr, _ = make_csr()
    svids = await ca.mint_x509_svids(
        [X509Request(WEB, csr=csr, ttl=timedelta(minutes=m, microseconds=7)) for m in (1, 59)]
    )
    for svid in svids:
        _assert_encodings_match_the_certificates(svid)
        assert certificate_pem(svid.leaf_der) == svid.leaf.public_bytes(serialization.Encoding.PEM)


async def test_ids_of_other_trust_domains_are_refused(ca: CertificateAuthority) -> None:
    """The CA signs only identities of its own trust domain, X.509 and JWT alike."""
    other = SpiffeId.parse("spiffe://other.org/web")
    csr, _ = make_csr()
    with pytest.raises(InvalidSpiffeIdError, match="not in this CA's trust domain"):
        await ca.mint_x509_svid(other, csr=csr)
    with pytest.raises(InvalidSpiffeIdError, match="not in this CA's trust domain"):
        await ca.mint_jwt_svid(other, audience=["a"])


@pytest.mark.parametrize(
    "hash_algorithm", [hashes.SHA384(), hashes.SHA512()], ids=["sha384", "sha512"]
)
async def test_upstream_chain_signed_with_another_hash_is_accepted(
    tmp_path: Path, hash_algorithm: hashes.SHA384 | hashes.SHA512
) -> None:
    """An operator's P-256 CAs that sign with SHA-384 or SHA-512 load, and SVIDs under them verify."""
    upstream = write_upstream_ca(tmp_path / "upstream", hash_algorithm=hash_algorithm)
    ca = await open_ca(tmp_path / "d", FakeClock(), upstream_dir=upstream.directory)
    try:
        svid = await ca.mint_x509_svid(WEB)
        assert svid.chain[-1] == upstream.intermediate
        assert ca.bundle().x509_authorities == (upstream.root,)
    finally:
        await ca.aclose()
