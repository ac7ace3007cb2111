"""The agent's link to the issuer: its own identity, the bundle feed, and how a failed call is sorted.

- ``issuer_link``: every "the issuer is away or says not now" folded into one error to back off on;
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
from sigil.node_agent.upstream.issuer_link import call_issuer, fetch_bundle_insecurely

__all__ = [
    "AgentIdentity",
    "Attest",
    "BundleSync",
    "StoredIdentity",
    "call_issuer",
    "fetch_bundle_insecurely",
    "load_stored_identity",
    "trust_bundles_of",
]
