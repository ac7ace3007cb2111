"""The real issuer (in process) and a real node agent enrolled at it, with a rotation an operator can force.

Tests of what sits on the agent's socket (Envoy over SDS, ``sigil-agent api watch`` feeding PostgreSQL) need the
whole chain real and a rotation on demand. :meth:`LocalAgent.force_rotation` is the operator's forced rotation
(``sigil-server authority prepare``, ``activate``, then ``taint`` the old authority): the agent learns of the taint
from the bundle feed and replaces every SVID the old authority signed at once, with the real issuer minting on the
real clock, so every SVID stays valid for the peers that check it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sigil.ca.authority import AuthorityKind
from sigil.ca.spiffe_id import SpiffeId
from sigil.issuer.edge.listeners import IssuerServer
from sigil.node_agent.agent import NodeAgent
from sigil.node_agent.settings import RotationSettings
from sigil_testing.enrolment import enrol_agent
from sigil_testing.issuer import issuer_settings, running_issuer

__all__ = ["LocalAgent", "local_agent", "uid_id"]


def uid_id(uid: int) -> SpiffeId:
    """The SPIFFE ID these tests entitle processes of ``uid`` to."""
    return SpiffeId.parse(f"spiffe://example.org/local/uid-{uid}")


@dataclass
class LocalAgent:
    """The running agent and the issuer it is enrolled at."""

    agent: NodeAgent
    issuer: IssuerServer

    async def force_rotation(self) -> str:
        """Replace the X.509 authority and taint the old one; returns the tainted authority's ID."""
        ca = self.issuer.issuer.ca
        (old,) = [a for a in ca.authorities(AuthorityKind.X509) if a.status.value == "active"]
        new = await ca.prepare(AuthorityKind.X509)
        await ca.activate(AuthorityKind.X509, new.authority_id)
        await ca.taint(AuthorityKind.X509, old.authority_id)
        return old.authority_id


@contextlib.asynccontextmanager
async def local_agent(
    directory: Path, entries: Mapping[SpiffeId, Sequence[str]]
) -> AsyncIterator[LocalAgent]:
    """The issuer and an agent (socket ``directory/agent.sock``) entitling workloads to ``entries``."""
    rotation = RotationSettings(
        backoff_initial=timedelta(milliseconds=50),
        bundle_wait=timedelta(seconds=1),
        idle_timeout=timedelta(days=1),
    )
    async with running_issuer(issuer_settings(directory / "server")) as issuer:
        settings = await enrol_agent(issuer, directory, entries, rotation=rotation)
        async with NodeAgent(settings) as agent:
            yield LocalAgent(agent, issuer)
