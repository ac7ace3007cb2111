"""The agent's link to the issuer: its own identity, the bundle feed, and how a failed call is sorted.

- ``issuer_link``: the calls the agent makes of ``sigil.issuer.client`` and the bins a failure falls in;
- ``agent_svid``: the agent's own SVID, attested once, stored, renewed, and attested again when refused;
- ``bundle_sync``: the trust bundles the agent serves, followed by the issuer's bundle long poll.

Only this package, the attestation's pod sync and the policy sync talk to the issuer; none of it imports the
Workload API endpoint, the attestation or the SVID cache (import-linter).
"""

from __future__ import annotations

from sigil.node_agent.upstream.agent_svid import (
    AgentIdentity,
    Attest,
    StoredIdentity,
    load_stored_identity,
)
from sigil.node_agent.upstream.bundle_sync import BundleSync, trust_bundles_of
from sigil.node_agent.upstream.issuer_link import (
    AGENT_BANNED,
    IssuerApi,
    call_issuer,
    fetch_bundle_insecurely,
    is_denial,
    reason_of,
    refuses_agent,
)

__all__ = [
    "AGENT_BANNED",
    "AgentIdentity",
    "Attest",
    "BundleSync",
    "IssuerApi",
    "StoredIdentity",
    "call_issuer",
    "fetch_bundle_insecurely",
    "is_denial",
    "load_stored_identity",
    "reason_of",
    "refuses_agent",
    "trust_bundles_of",
]
