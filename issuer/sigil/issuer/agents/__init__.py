"""Node agents as callers: who is calling an agent endpoint, decided afresh on every request (``authentication``)."""

from __future__ import annotations

from sigil.issuer.agents.authentication import AgentAuthenticator, CallingAgent

__all__ = ["AgentAuthenticator", "CallingAgent"]
