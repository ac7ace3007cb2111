"""An agent's batch minted per CSR: each CSR's SVIDs or its own refusal, the same in process and in workers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from sigil_testing.ca import make_csr, open_ca
from sigil_testing.clock import FakeClock

from sigil.ca import SpiffeId
from sigil.ca.errors import InvalidSpiffeIdError, MalformedCsrError
from sigil.ca.minting import CsrGrants, Grant
from sigil.ca.service import CertificateAuthority

WEB = SpiffeId.parse("spiffe://example.org/ns/default/sa/web")
API = SpiffeId.parse("spiffe://example.org/ns/default/sa/api")


@pytest.fixture(params=[1, 2], ids=["in-process", "two-workers"])
async def ca(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[CertificateAuthority]:
    authority = await open_ca(tmp_path / "data", clock, signing_workers=request.param)
    yield authority
    await authority.aclose()


async def test_each_csr_gets_its_svids_or_its_own_refusal(
    ca: CertificateAuthority, clock: FakeClock
) -> None:
    """Two SVIDs over one CSR's key, a bad CSR refused alone, a CSR with nothing granted only checked."""
    csr, key = make_csr()
    checked, _ = make_csr()
    answers = await ca.mint_x509_per_csr(
        [
            CsrGrants(csr, [Grant(WEB), Grant(API, timedelta(minutes=5), ("api.internal",))]),
            CsrGrants(b"not a csr", [Grant(WEB)]),
            CsrGrants(checked),
            CsrGrants(b"", ()),
        ],
        holder="spiffe://example.org/agent",
    )
    web, api = answers[0]  # type: ignore[misc]
    assert (web.spiffe_id, api.spiffe_id) == (WEB, API)
    assert web.leaf.public_key() == api.leaf.public_key() == key.public_key()
    assert api.not_after == (clock() + timedelta(minutes=5)).replace(microsecond=0)
    sans = api.leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["api.internal"]
    assert isinstance(answers[1], MalformedCsrError)
    assert "not a PEM or DER PKCS#10" in str(answers[1])
    assert answers[2] == []
    assert isinstance(answers[3], MalformedCsrError)
    assert "empty" in str(answers[3])
    journal = await ca.store.journal()
    assert sorted(e.serial for e in journal) == sorted([web.serial_hex, api.serial_hex])
    assert {e.holder for e in journal} == {"spiffe://example.org/agent"}


async def test_a_batch_with_nothing_granted_signs_nothing(ca: CertificateAuthority) -> None:
    """CSRs alone are checked and answered; the journal stays empty."""
    csr, _ = make_csr()
    answers = await ca.mint_x509_per_csr([CsrGrants(csr), CsrGrants(b"not a csr")])
    assert answers[0] == []
    assert isinstance(answers[1], MalformedCsrError)
    assert await ca.store.journal() == []


async def test_an_id_outside_the_trust_domain_refuses_the_whole_batch(
    ca: CertificateAuthority,
) -> None:
    """A foreign ID anywhere in the batch, even over a bad CSR, and nothing of it is signed or journaled."""
    csr, _ = make_csr()
    foreign = SpiffeId.parse("spiffe://elsewhere.test/web")
    with pytest.raises(InvalidSpiffeIdError, match="not in this CA's trust domain"):
        await ca.mint_x509_per_csr(
            [CsrGrants(csr, [Grant(WEB)]), CsrGrants(b"not a csr", [Grant(foreign)])]
        )
    assert await ca.store.journal() == []
