"""The real issuer (in process) and a real node agent enrolled at it, with a clock a test can move to force rotation.

Tests of what sits on the agent's socket (Envoy over SDS, ``sigil-agent api watch`` feeding PostgreSQL) need the
whole chain real, but a rotation on demand: :func:`force_rotation` moves the agent's clock past an SVID's rotation
point, wakes the SVID cache, and puts the clock back as soon as the cache has changed. The issuer mints on the real
clock throughout, so every SVID is valid for the peers that check it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509

from sigil.ca.spiffe_id import SpiffeId
from sigil.node_agent.agent import NodeAgent
from sigil.node_agent.settings import RotationSettings
from sigil_testing.enrolment import enrol_agent
from sigil_testing.issuer import issuer_settings, running_issuer

__all__ = ["ShiftedClock", "force_rotation", "local_agent", "uid_id"]


def uid_id(uid: int) -> SpiffeId:
    """The SPIFFE ID these tests entitle processes of ``uid`` to."""
    return SpiffeId.parse(f"spiffe://example.org/local/uid-{uid}")


@dataclass
class ShiftedClock:
    """The real time plus an offset the test moves."""

    offset: timedelta = field(default_factory=timedelta)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@contextlib.asynccontextmanager
async def local_agent(
    directory: Path, entries: Mapping[SpiffeId, Sequence[str]]
) -> AsyncIterator[tuple[NodeAgent, ShiftedClock]]:
    """The issuer and an agent (socket ``directory/agent.sock``) entitling workloads to ``entries``."""
    clock = ShiftedClock()
    rotation = RotationSettings(
        backoff_initial=timedelta(milliseconds=50),
        bundle_wait=timedelta(seconds=1),
        idle_timeout=timedelta(days=1),
    )
    async with running_issuer(issuer_settings(directory / "server")) as issuer:
        settings = await enrol_agent(issuer, directory, entries, rotation=rotation)
        async with NodeAgent(settings, clock=clock) as agent:
            yield agent, clock


async def force_rotation(agent: NodeAgent, clock: ShiftedClock, leaf: x509.Certificate) -> None:
    """Move the agent's clock past ``leaf``'s rotation point until the agent has changed, then back."""
    life = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    # Rotation is due at half-life +-10% (SPIRE's schedule); 65% is past it whatever the jitter drew.
    due = leaf.not_valid_before_utc + life * 0.65
    changes = agent.svid_cache.changes
    revision = changes.revision
    clock.offset = due - datetime.now(UTC)
    try:
        agent.svid_cache.wake()
        await asyncio.wait_for(changes.wait_after(revision), 30)
    finally:
        clock.offset = timedelta()
