"""The enforcer's Prometheus metrics, registered in a registry the caller passes (never the global one).

Issue 5 asks that the policy revision each enforcer holds be visible in its metrics, so that an operator can
see which enforcers lag behind a change; decisions are counted by outcome and by the tier that decided
(authz.md part 7), and peers refused before any policy ran (their chain failed verification) under the tier
``verification`` with the refusal's reason counted apart.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from sigil.enforcer.policy.decision import Decision

__all__ = ["PROBE_TIER", "VERIFICATION_TIER", "EnforcerMetrics"]

#: The ``tier`` label of a connection refused because the peer's SVID did not verify.
VERIFICATION_TIER = "verification"
#: The ``tier`` label of a plaintext kubelet probe (authz.md 7.1): its own kind of decision, never a policy's.
PROBE_TIER = "probe"


class EnforcerMetrics:
    """Counters and gauges of one enforcer (a proxy, or an aiohttp application)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.decisions = Counter(
            "sigil_enforcer_decisions",
            "Connections and requests decided, by outcome and by the tier that decided.",
            ["decision", "tier"],
            registry=registry,
        )
        self.refusals = Counter(
            "sigil_enforcer_peer_refusals",
            "Peers whose SVID did not verify, by reason.",
            ["reason"],
            registry=registry,
        )
        self.policy_revision = Gauge(
            "sigil_enforcer_policy_revision",
            "The revision of the policy set in force (0: none loaded yet).",
            registry=registry,
        )
        self.policy_errors = Counter(
            "sigil_enforcer_policy_load_errors",
            "Policy documents or sources refused on loading (the last good version stays in force).",
            registry=registry,
        )
        self.dry_run = Counter(
            "sigil_enforcer_dry_run",
            "Decisions where a dry-run policy matched, by that policy and the verdict had dry-run policies "
            "been enforced.",
            ["policy", "would"],
            registry=registry,
        )
        self.audited = Counter(
            "sigil_enforcer_audited",
            "Connections the audit default allowed that the deny default would have refused.",
            registry=registry,
        )
        self.connections = Gauge(
            "sigil_enforcer_proxy_connections",
            "Proxied connections open now.",
            ["direction"],
            registry=registry,
        )

    def count_decision(self, decision: Decision) -> None:
        """Count one policy decision."""
        outcome = "allowed" if decision.allowed else "denied"
        self.decisions.labels(outcome, decision.tier.value).inc()
        if decision.dry_run and decision.shadow is not None:
            would = "allowed" if decision.shadow.allowed else "denied"
            for policy in {match.policy for match in decision.dry_run}:
                self.dry_run.labels(policy, would).inc()
        if decision.verdict.audit:
            self.audited.inc()

    def count_probe(self, *, allowed: bool) -> None:
        """Count a plaintext connection judged as a kubelet probe: answered, or refused."""
        self.decisions.labels("allowed" if allowed else "denied", PROBE_TIER).inc()

    def count_refusal(self, reason: str) -> None:
        """Count a peer refused at verification, before any policy ran."""
        self.refusals.labels(reason).inc()
        self.decisions.labels("denied", VERIFICATION_TIER).inc()
