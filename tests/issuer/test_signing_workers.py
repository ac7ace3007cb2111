"""A server that signs in worker processes serves agents as one that signs in process, and is configured like one."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest
from sigil_testing.issuer import attested_agent, issuer_settings, running_issuer

from sigil.ca import SpiffeId
from sigil.ca.config import ConfigError
from sigil.ca.errors import SigningUnavailableError
from sigil.ca.keys import generate_key
from sigil.ca.signing_pool import _Worker
from sigil.issuer.client import X509SvidRequest, make_csr
from sigil.issuer.settings import load_server_settings


async def test_agents_attest_renew_and_get_svids_from_signing_workers(tmp_path: Path) -> None:
    """With two workers an agent attests, renews and gets a batch with a bad CSR refused by name; a killed worker
    costs nothing but its replacement."""
    settings = issuer_settings(tmp_path / "data", ca_options={"signing_workers": 2})
    async with running_issuer(settings) as server:
        pool = server.issuer.ca.signing_pool
        assert pool is not None
        assert len(pool.pids) == 2
        async with attested_agent(server) as agent:
            assert agent.agent_svid is not None
            agent_id = agent.agent_svid.svid.spiffe_id
            await server.issuer.registry.create_entry(
                SpiffeId.parse("spiffe://example.org/billing"),
                agent_id,
                ["unix:uid:1000"],
                now=server.issuer.ca.now(),
                dns_names=["billing.internal"],
            )
            renewed = await agent.renew()
            assert renewed.svid.spiffe_id == agent_id
            os.kill(min(pool.pids), signal.SIGKILL)
            good = [X509SvidRequest(make_csr(generate_key()), selectors=("unix:uid:1000",))] * 20
            bad = X509SvidRequest(b"not a csr", selectors=("unix:uid:1000",))
            results = await agent.batch_x509_svids([*good, bad])
        assert [str(r.svids[0].spiffe_id) for r in results[:-1]] == [
            "spiffe://example.org/billing"
        ] * 20
        assert results[-1].error is not None
        assert results[-1].error.problem["reason"] == "malformed_csr"  # type: ignore[attr-defined]
        assert len(pool.pids) == 2


def test_the_flag_beats_the_environment_which_beats_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ca.signing_workers`` in the file, ``SIGIL_SIGNING_WORKERS`` over it, ``--signing-workers`` over both."""
    monkeypatch.delenv("SIGIL_SIGNING_WORKERS", raising=False)
    assert load_server_settings(None, data_dir=str(tmp_path)).ca.signing_workers == 1
    config = tmp_path / "sigil.yaml"
    config.write_text("ca:\n  signing_workers: 3\n  journal_grace: 2h\n")
    loaded = load_server_settings(config, data_dir=str(tmp_path))
    assert loaded.ca.signing_workers == 3
    assert loaded.ca.journal_grace.total_seconds() == 7200
    monkeypatch.setenv("SIGIL_SIGNING_WORKERS", "2")
    assert load_server_settings(config, data_dir=str(tmp_path)).ca.signing_workers == 2
    flagged = load_server_settings(config, data_dir=str(tmp_path), signing_workers=4)
    assert flagged.ca.signing_workers == 4


def test_a_worker_count_that_is_not_a_number_is_refused(tmp_path: Path) -> None:
    """``signing_workers: 0`` or ``many`` stops the server at start, naming the key."""
    config = tmp_path / "sigil.yaml"
    for value in ("0", "many"):
        config.write_text(f"ca:\n  signing_workers: {value}\n")
        with pytest.raises(ConfigError, match="signing_workers"):
            load_server_settings(config, data_dir=str(tmp_path))


async def test_a_server_whose_workers_cannot_sign_fails_to_start_and_closes_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers killed at every signature: the server refuses to start (it cannot sign its own SVID) and leaves
    no datastore connection or worker behind."""
    # Real workers, really killed (SIGKILL) as each signing job reaches them.
    real_call = _Worker.call

    async def killed_when_signing(
        worker: _Worker, operation: str, arguments: tuple[Any, ...]
    ) -> Any:
        if operation == "sign":
            worker.process.kill()
            await worker.process.wait()
        return await real_call(worker, operation, arguments)

    monkeypatch.setattr(_Worker, "call", killed_when_signing)
    settings = issuer_settings(tmp_path / "data", ca_options={"signing_workers": 2})
    before = set(threading.enumerate())
    with pytest.raises(SigningUnavailableError, match="died twice"):
        async with running_issuer(settings):
            pass
    # Each open SQLite connection keeps a thread of its own: none of the server's may outlive its failed start.
    left = [
        t
        for t in threading.enumerate()
        if t not in before and "_connection_worker_thread" in t.name
    ]
    for thread in left:
        await asyncio.to_thread(thread.join, 5)
    assert not [t for t in left if t.is_alive()]
