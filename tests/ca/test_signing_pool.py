"""Signing in worker processes: the same SVIDs as in process, keys kept out of sight, dead workers replaced."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sigil_testing.ca import make_csr, open_ca, openssl
from sigil_testing.clock import FakeClock
from spiffe import X509Svid as PySpiffeSvid

from sigil.ca import SpiffeId
from sigil.ca.errors import MalformedCsrError, SigningUnavailableError
from sigil.ca.keys import private_key_der
from sigil.ca.service import CertificateAuthority, X509Request
from sigil.ca.settings import CaSettings
from sigil.ca.signing_pool import SigningPool, _SignerSpec, _Worker

WEB = SpiffeId.parse("spiffe://example.org/ns/default/sa/web")


@pytest.fixture
async def pooled(tmp_path: Path, clock: FakeClock) -> AsyncIterator[CertificateAuthority]:
    ca = await open_ca(tmp_path / "data", clock, signing_workers=2)
    yield ca
    await ca.aclose()


def _pool(ca: CertificateAuthority) -> SigningPool:
    assert ca.signing_pool is not None
    return ca.signing_pool


async def test_workers_mint_svids_that_openssl_and_py_spiffe_accept(
    pooled: CertificateAuthority, tmp_path: Path
) -> None:
    """A batch signed by two workers gives each ID its own leaf over its own key, valid for openssl and py-spiffe."""
    assert len(_pool(pooled).pids) == 2
    made = [make_csr() for _ in range(20)]
    ids = [SpiffeId.parse(f"spiffe://example.org/w{i}") for i in range(20)]
    svids = await pooled.mint_x509_svids(
        [
            X509Request(i, csr=csr, dns_names=("w.example",))
            for i, (csr, _) in zip(ids, made, strict=True)
        ]
    )
    (tmp_path / "bundle.pem").write_bytes(pooled.bundle().to_pem())
    for spiffe_id, svid, (_, key) in zip(ids, svids, made, strict=True):
        assert svid.spiffe_id == spiffe_id
        assert svid.leaf.public_key() == key.public_key()
        parsed = PySpiffeSvid.parse_raw(svid.chain_der(), private_key_der(key))
        assert str(parsed.spiffe_id) == str(spiffe_id)
    (tmp_path / "svid.pem").write_bytes(svids[-1].chain_pem())
    result = openssl("verify", "-CAfile", "bundle.pem", "svid.pem", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(await pooled.store.journal()) == 20


async def test_a_malformed_csr_is_refused_by_name(pooled: CertificateAuthority) -> None:
    """The workers' CSR check refuses what the in-process one refuses, with the same reason."""
    (answer,) = await pooled.verify_csrs([b"not a csr"])
    assert isinstance(answer, MalformedCsrError)
    assert "not a PEM or DER PKCS#10" in str(answer)
    with pytest.raises(MalformedCsrError):
        await pooled.mint_x509_svids([X509Request(WEB, csr=b"not a csr")])


async def test_a_killed_worker_is_replaced_and_its_batch_retried(
    pooled: CertificateAuthority, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGKILL to a worker as a job of the batches in flight reaches it: every batch still comes back, and the
    next batch that needs two workers gets a fresh one in the dead one's place."""
    csr, _ = make_csr()
    requests = [X509Request(WEB, csr=csr) for _ in range(200)]
    victim = min(_pool(pooled).pids)
    # The real worker, really killed, at a known moment: just as the first job is sent to it.
    real_call = _Worker.call
    killed: list[int] = []

    async def kill_victim(worker: _Worker, operation: str, arguments: tuple[Any, ...]) -> Any:
        if worker.process.pid == victim and not killed:
            killed.append(victim)
            os.kill(victim, signal.SIGKILL)
            await worker.process.wait()
        return await real_call(worker, operation, arguments)

    monkeypatch.setattr(_Worker, "call", kill_victim)
    batches = [asyncio.create_task(pooled.mint_x509_svids(requests)) for _ in range(4)]
    results = await asyncio.gather(*batches)
    assert killed == [victim]
    assert [len(r) for r in results] == [200] * 4
    assert victim not in _pool(pooled).pids
    # An emptied slot gets its fresh worker when a job next needs it: a batch that uses both slots.
    assert len(await pooled.mint_x509_svids(requests)) == 200
    after = _pool(pooled).pids
    assert len(after) == 2
    assert victim not in after


async def test_workers_that_keep_dying_fail_the_batch_cleanly(
    pooled: CertificateAuthority, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch whose worker is killed, and then its replacement too, is refused as unavailable; the next is served."""
    # The real workers, really killed: each job's worker gets SIGKILL just before the job is sent to it.
    real_call = _Worker.call

    async def killed_first(worker: _Worker, operation: str, arguments: tuple[Any, ...]) -> Any:
        if operation != "ready":
            worker.process.kill()
            await worker.process.wait()
        return await real_call(worker, operation, arguments)

    monkeypatch.setattr(_Worker, "call", killed_first)
    csr, _ = make_csr()
    with pytest.raises(SigningUnavailableError, match="died twice"):
        await pooled.mint_x509_svids([X509Request(WEB, csr=csr)])
    monkeypatch.undo()
    (svid,) = await pooled.mint_x509_svids([X509Request(WEB, csr=csr)])
    assert svid.spiffe_id == WEB
    # A batch that needs both slots gets both their workers back.
    assert len(await pooled.mint_x509_svids([X509Request(WEB, csr=csr)] * 16)) == 16
    assert len(_pool(pooled).pids) == 2


def test_the_key_never_shows_in_what_is_sent() -> None:
    """The record that carries the key to a worker prints without it."""
    spec = _SignerSpec("abc", b"CERT", b"SECRET-KEY-BYTES")
    assert "SECRET" not in repr(spec)
    assert "abc" in repr(spec)


def test_worker_count_is_checked() -> None:
    """Zero or negative workers are refused naming the setting."""
    with pytest.raises(ValueError, match="signing_workers must be 1 or more"):
        CaSettings(signing_workers=0).check()
    with pytest.raises(ValueError, match="signing_workers must be a whole number"):
        CaSettings.from_mapping({"signing_workers": "many"}, data_dir=Path("."))
