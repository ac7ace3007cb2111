"""A node agent enrolled at a real, running issuer the way an operator enrols one: a join token, registration
entries under the agent ID that token will attest as, and the bootstrap bundle on disk.

Tests of the agent against the real issuer start from here rather than each writing the same steps out; the
agent's tests that also stop and restart the issuer, move one clock for both, or count what it issued use
``sigil_testing.agent``'s ``agent_world`` (the same real issuer, with those handles).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path

from sigil.ca.spiffe_id import SpiffeId
from sigil.issuer.edge.listeners import IssuerServer
from sigil.node_agent.settings import AgentSettings, AttestationSettings, RotationSettings

__all__ = ["enrol_agent"]


async def enrol_agent(
    server: IssuerServer,
    directory: Path,
    entries: Mapping[SpiffeId, Sequence[str]] | None = None,
    *,
    rotation: RotationSettings | None = None,
) -> AgentSettings:
    """Settings of a new agent of ``server`` keeping its state in ``directory``, entitled to ``entries``.

    ``entries`` map each SPIFFE ID to the selectors a workload must show; the join token is valid ten minutes.
    """
    issuer = server.issuer
    now = issuer.ca.now()
    token = await issuer.registry.generate_join_token(ttl=timedelta(minutes=10), now=now)
    agent_id = issuer.ca.settings.trust_domain.spiffe_id(
        "sigil", "agent", "join", token.agent_suffix
    )
    for spiffe_id, selectors in (entries or {}).items():
        await issuer.registry.create_entry(spiffe_id, agent_id, list(selectors), now=now)
    bundle = directory / "bootstrap.pem"
    bundle.write_bytes(issuer.ca.bundle().to_pem())
    return AgentSettings(
        trust_domain=issuer.ca.settings.trust_domain,
        issuer_url=server.url,
        data_dir=directory / "agent",
        socket_path=directory / "agent.sock",
        trust_bundle_path=bundle,
        attestation=AttestationSettings(join_token=token.token),
        rotation=rotation if rotation is not None else RotationSettings(),
    )
