"""A server that signs in worker processes serves agents as one that signs in process, and is configured like one."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from sigil_testing.issuer import attested_agent, issuer_settings, running_issuer

from sigil.ca import SpiffeId
from sigil.ca.config import ConfigError
from sigil.ca.keys import generate_key
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
