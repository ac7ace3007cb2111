"""The real issuer (with a watched policy directory) and a real node agent in front of it, for distribution tests.

This process plays the workload: the agent's attestors are its own ``unix`` one and a stand-in ``k8s`` attestor
that places every caller in one pod (namespace and labels chosen by the test), so scoping is exercised through the
real socket, the real per-connection attestation and the real issuer's policy feed.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sigil_testing.enrolment import enrol_agent
from sigil_testing.issuer import issuer_settings, running_issuer
from sigil_testing.paths import short_directory

from sigil.issuer.edge.listeners import IssuerServer
from sigil.issuer.settings import PolicySettings
from sigil.node_agent.agent import NodeAgent
from sigil.node_agent.attestation.attestors.unix import UnixAttestor
from sigil.node_agent.attestation.peer import PeerCredentials
from sigil.node_agent.attestation.selectors import Selector, Selectors
from sigil.node_agent.settings import AgentSettings, RotationSettings

__all__ = ["PodAttestor", "PolicyWorld", "policy_world", "write_policies"]


class PodAttestor:
    """A ``k8s`` attestor placing every caller in one pod; ``namespace`` None places it in none."""

    name = "k8s"

    def __init__(self, namespace: str | None, labels: Mapping[str, str] | None = None) -> None:
        self.namespace = namespace
        self.labels = dict(labels or {})

    async def attest(self, peer: PeerCredentials) -> Selectors:
        """The pod's selectors, as the real attestor names them."""
        if self.namespace is None:
            return frozenset()
        found = {Selector("k8s", f"ns:{self.namespace}"), Selector("k8s", "sa:default")}
        found.update(Selector("k8s", f"pod-label:{k}:{v}") for k, v in self.labels.items())
        return frozenset(found)


def write_policies(directory: Path, name: str, text: str) -> None:
    """Replace one policy file atomically (its stamp changes even within one mtime tick)."""
    tmp = directory / f".{name}.tmp"
    tmp.write_text(text)
    os.replace(tmp, directory / name)


@dataclass
class PolicyWorld:
    """A running issuer watching :attr:`policies`, and how to start agents of it."""

    server: IssuerServer
    directory: Path
    policies: Path
    settings: AgentSettings

    def agent(self, attestor: PodAttestor) -> NodeAgent:
        """A node agent of this world whose callers are attested into ``attestor``'s pod."""
        return NodeAgent(self.settings, attestors=[UnixAttestor(), attestor])

    @property
    def endpoint(self) -> str:
        """The agent socket's ``unix://`` address."""
        return self.settings.endpoint


@asynccontextmanager
async def policy_world(initial: Mapping[str, str]) -> AsyncIterator[PolicyWorld]:
    """An issuer whose policy directory holds ``initial`` (file name -> YAML), and an enrolled agent's settings."""
    with short_directory("sgp-") as directory:
        policies = directory / "policies"
        policies.mkdir()
        for name, text in initial.items():
            write_policies(policies, name, text)
        policy = PolicySettings(directory=policies, poll_interval=timedelta(seconds=0.05))
        async with running_issuer(issuer_settings(directory / "server", policy=policy)) as server:
            rotation = RotationSettings(
                backoff_initial=timedelta(milliseconds=50),
                backoff_max=timedelta(milliseconds=200),
                bundle_wait=timedelta(seconds=5),
            )
            settings = await enrol_agent(server, directory, rotation=rotation)
            yield PolicyWorld(server, directory, policies, settings)
