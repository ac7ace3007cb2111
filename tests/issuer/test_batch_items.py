"""An agent's X509-SVID batch is answered item by item, with signing in process or in worker processes alike."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sigil_testing.issuer import attested_agent, issuer_settings, running_issuer

from sigil.ca import SpiffeId
from sigil.ca.keys import generate_key
from sigil.issuer.client import X509SvidRequest, make_csr


@pytest.mark.parametrize("workers", [1, 2], ids=["in-process", "two-workers"])
async def test_each_item_is_issued_or_refused_on_its_own(tmp_path: Path, workers: int) -> None:
    """A malformed CSR is an item's reason before an identity it may not hold; the granted items are issued,
    journaled and counted, and each refusal is counted under its reason."""
    registry = CollectorRegistry()
    settings = issuer_settings(tmp_path / "data", ca_options={"signing_workers": workers})
    async with (
        running_issuer(settings, registry=registry) as server,
        attested_agent(server) as agent,
    ):
        assert agent.agent_svid is not None
        await server.issuer.registry.create_entry(
            SpiffeId.parse("spiffe://example.org/billing"),
            agent.agent_svid.svid.spiffe_id,
            ["unix:uid:1000"],
            now=server.issuer.ca.now(),
        )
        journaled = await server.issuer.ca.store.journal_size()
        issued = registry.get_sample_value(
            "sigil_svids_issued_total", {"kind": "x509", "caller": "agent"}
        )
        key = generate_key()
        results = await agent.batch_x509_svids(
            [
                X509SvidRequest(make_csr(key), selectors=("unix:uid:1000",)),
                X509SvidRequest(b"not a csr", selectors=("unix:uid:1000",)),
                X509SvidRequest(b"not a csr", selectors=("unix:uid:2000",)),
                X509SvidRequest(make_csr(generate_key()), selectors=("unix:uid:2000",)),
            ]
        )
        assert await server.issuer.ca.store.journal_size() == journaled + 1
    (svid,) = results[0].svids
    assert str(svid.spiffe_id) == "spiffe://example.org/billing"
    assert svid.chain[0].public_key() == key.public_key()
    reasons = [r.error.problem["reason"] for r in results[1:]]  # type: ignore[union-attr]
    assert reasons == ["malformed_csr", "malformed_csr", "not_entitled"]
    assert registry.get_sample_value("sigil_refusals_total", {"reason": "malformed_csr"}) == 2
    assert registry.get_sample_value("sigil_refusals_total", {"reason": "not_entitled"}) == 1
    after = registry.get_sample_value(
        "sigil_svids_issued_total", {"kind": "x509", "caller": "agent"}
    )
    assert after == (issued or 0) + 1
