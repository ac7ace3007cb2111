"""The policy decision point of one workload: the policies in force, compiled for it, asked per connection.

An enforcer guards one pod, so the target (namespace, labels) and the trust domain are fixed at start; only the
policies change. :class:`Authorizer` holds the compiled index of the current revision, swaps in a new one when
the policy directory changes (the :class:`~sigil.enforcer.policy.store.PolicyStore` keeps the last good version
of anything refused, and a directory that cannot be read changes nothing), and logs and counts every decision.
Instead of a directory it can follow an :class:`~sigil.enforcer.policy.receiver.AgentPolicySource` (policies from the
node agent): each snapshot the source applies is compiled at once, the namespace labels the agent attested are
used, and the revision reported is the issuer's.
Reading the directory is blocking file I/O and runs in a worker thread; deciding is a few dict lookups and runs
on the caller's thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from sigil.ca.spiffe_id import SpiffeId, TrustDomain
from sigil.enforcer.bundles import BundleSet
from sigil.enforcer.errors import PolicySourceError
from sigil.enforcer.metrics import EnforcerMetrics
from sigil.enforcer.policy.decision import Decision, Target
from sigil.enforcer.policy.defaults import DefaultPolicy
from sigil.enforcer.policy.dialects.base import Exactness, TranslateOptions
from sigil.enforcer.policy.documents import PolicyKey
from sigil.enforcer.policy.effective import EffectivePolicy, effective
from sigil.enforcer.policy.index import PolicyIndex
from sigil.enforcer.policy.loader import Stamp, policy_stamps
from sigil.enforcer.policy.origin import Origin, OriginKind, policy_revision
from sigil.enforcer.policy.peer_ids import WorkloadIdPattern
from sigil.enforcer.policy.store import LoadReport, PolicyStore

if TYPE_CHECKING:
    # Only for types: a directory-fed authorizer (and ``sigil-enforcer check``) need not import grpclib.
    from sigil.enforcer.policy.receiver import AgentPolicies, AgentPolicySource
    from sigil.enforcer.sources import X509Material

__all__ = ["Authorizer"]

_log = structlog.get_logger(__name__)


class Authorizer:
    """Decides connections to ``target`` against ``policies``: a directory, or the node agent's feed."""

    def __init__(
        self,
        *,
        trust_domain: TrustDomain,
        target: Target,
        policies: Path | AgentPolicySource | None = None,
        default_allow: bool = True,
        default: DefaultPolicy | None = None,
        namespace_labels: Mapping[str, str] | None = None,
        workload_ids: WorkloadIdPattern | None = None,
        metrics: EnforcerMetrics | None = None,
        root_namespace: str = "istio-system",  # Istio's default rootNamespace
        trust_domain_aliases: tuple[str, ...] = (),  # Istio's trustDomainAliases
    ) -> None:
        self.trust_domain = trust_domain
        # Compiled once: each new policy revision compiles an index with it (compiling the template took a
        # tenth of an enforcer's work per change).
        self.workload_ids = workload_ids or WorkloadIdPattern()
        # Istio's and Linkerd's documents in the directory are translated for this trust domain.
        self.translation = TranslateOptions(
            trust_domain=trust_domain.name,
            trust_domain_aliases=trust_domain_aliases,
            root_namespace=root_namespace,
            id_template=self.workload_ids.template,
        )
        self.target = target
        self.directory = policies if isinstance(policies, Path) else None
        self.agent = None if policies is None or isinstance(policies, Path) else policies
        self.default = DefaultPolicy.of(allow=default_allow) if default is None else default
        self.default_allow = self.default is not DefaultPolicy.DENY
        self._namespaces = {target.namespace: dict(namespace_labels or {})}
        self.metrics = metrics
        self._store = PolicyStore() if self.agent is None else self.agent.store
        self._index = self._compile()
        if self.agent is not None:
            self.agent.subscribe(self._adopt)
        self._stamps: dict[str, Stamp] | None = None
        self._changed = asyncio.Condition()
        self._bundles: BundleSet | None = None

    @property
    def revision(self) -> int:
        """The revision of the policy set in force (0 until something loaded); the issuer's with an agent."""
        if self.agent is not None:
            return self.agent.revision
        return self._store.current.revision

    @property
    def index(self) -> PolicyIndex:
        """The compiled index of the revision in force."""
        return self._index

    def decide(self, peer: SpiffeId | None, port: int, *, address: str | None = None) -> Decision:
        """Decide a connection from ``peer`` (None: no valid SVID) at ``address`` (the peer's IP; None:
        unknown) to the target on ``port``; log and count it, with what dry-run policies would have done."""
        decision = self._index.decide(peer, self.target, port, address=address)
        if self.metrics is not None:
            self.metrics.count_decision(decision)
        log = _log.info if decision.allowed else _log.warning
        extra: dict[str, object] = {}
        if decision.dry_run and decision.shadow is not None:
            # authz.md 7.1: the would-be verdict in the decision's own log line.
            extra["dry_run"] = {
                "would": "allowed" if decision.shadow.allowed else "denied",
                "policy": decision.shadow.policy,
                "rule": decision.shadow.rule,
                "matched": sorted({match.policy for match in decision.dry_run}),
            }
        if decision.verdict.audit:
            extra["audit"] = "would be denied by the deny default"
        log(
            "decision",
            decision="allowed" if decision.allowed else "denied",
            peer=None if peer is None else str(peer),
            address=address,
            port=port,
            tier=decision.tier.value,
            policy=decision.policy,
            rule=decision.rule,
            reason=decision.reason,
            revision=self.revision,
            **extra,
        )
        return decision

    def set_bundles(self, bundles: BundleSet) -> bool:
        """Put ``bundles`` in force; when they differ from the last ones, no decision cached before is answered
        again (True). A new policy revision, or new namespace labels, compile a new index whose decision cache
        starts empty anyway."""
        if bundles == self._bundles:
            return False
        self._bundles = bundles
        self._index.forget_decisions()
        return True

    def follow_material(self, material: X509Material) -> None:
        """An identity source's subscriber: :meth:`set_bundles` with each new material's bundles."""
        self.set_bundles(material.bundles)

    def effective(self, *, port: int | None = None) -> EffectivePolicy:
        """The effective policy of the pod this authorizer guards, under the revision in force."""
        return effective(
            self._store.current.policies,
            self.target,
            trust_domain=self.trust_domain,
            namespace_labels=self._namespaces[self.target.namespace],
            default=self.default,
            workload_ids=self.workload_ids,
            port=port,
            origins=self._origins(),
            revision=self.revision,
        )

    def policy_view(self, *, port: int | None = None) -> dict[str, Any]:
        """What the metrics listener's ``/policy`` serves: the revision and scope held, and the effective view."""
        current = None if self.agent is None else self.agent.current
        scope: dict[str, Any] = {"source": "directory", "directory": str(self.directory)}
        if self.agent is not None:
            scope = {
                "source": "agent",
                "endpoint": self.agent.endpoint,
                "digest": None if current is None else current.digest,
                "attested_namespace": None if current is None else current.namespace,
                "attested_labels": {} if current is None else dict(current.pod_labels),
            }
        scope["policies"] = len(self._store.current.policies)
        return {
            "revision": self.revision,
            "scope": scope,
            "effective": self.effective(port=port).to_dict(),
        }

    def _origins(self) -> dict[PolicyKey, Origin]:
        if self.agent is not None:
            return {} if self.agent.current is None else dict(self.agent.current.origins)
        # From a directory: the file that holds each policy (the store keeps no document numbers).
        owners = self._store.owners()
        return {
            accepted.key: Origin(
                kind=OriginKind.FILE,
                name=owners[accepted.key],
                revision=policy_revision(accepted.canonical),
            )
            for accepted in self._store.current.accepted
            if accepted.key in owners
        }

    def load(self) -> LoadReport:
        """Read the policy directory now (blocking: call it from a worker thread when on a loop)."""
        if self.directory is None:
            raise ValueError("this authorizer has no policy directory")
        stamps = policy_stamps(self.directory)
        report = self._store.load_directory(self.directory, options=self.translation)
        self._stamps = stamps
        if report.changed:
            self._index = self._compile()
        self._report(report)
        return report

    async def reload(self) -> LoadReport | None:
        """Re-read the directory in a worker thread if its files changed; None when nothing changed."""
        if self.directory is None:
            return None
        directory = self.directory
        try:
            stamps = await asyncio.to_thread(policy_stamps, directory)
            if stamps == self._stamps:
                return None
            report = await asyncio.to_thread(self.load)
        except PolicySourceError as err:
            # A vanished mount must not read as "every policy was deleted": the last good set stays.
            _log.error("policy directory unreadable", error=str(err), revision=self.revision)
            if self.metrics is not None:
                self.metrics.policy_errors.inc()
            return None
        if report.changed:
            async with self._changed:
                self._changed.notify_all()
        return report

    async def watch(self, *, interval: float = 2.0) -> None:
        """Poll the directory every ``interval`` seconds and reload what changed; runs until cancelled."""
        while True:
            await self.reload()
            await asyncio.sleep(interval)

    async def wait_for_revision(self, revision: int) -> None:
        """Return once the revision in force is at least ``revision``."""
        if self.agent is not None:
            await self.agent.wait_for_revision(
                revision
            )  # compiled before the source wakes its waiters
            return
        async with self._changed:
            await self._changed.wait_for(lambda: self.revision >= revision)

    def _compile(self) -> PolicyIndex:
        return self._store.current.compile(
            trust_domain=self.trust_domain,
            default=self.default,
            namespaces=self._namespaces,
            workload_ids=self.workload_ids,
        )

    def _adopt(self, applied: AgentPolicies) -> None:
        """Compile a snapshot the agent source just applied (called on the loop, before its waiters wake)."""
        labels = self._namespaces[self.target.namespace]
        if applied.namespace == self.target.namespace and applied.namespace_labels != labels:
            self._namespaces[self.target.namespace] = dict(applied.namespace_labels)
            self._index = self._compile()
        elif applied.report.changed:
            self._index = self._compile()
        if applied.namespace is not None and applied.namespace != self.target.namespace:
            _log.warning(
                "the agent attests this workload in another namespace than the target",
                attested=applied.namespace,
                target=self.target.namespace,
            )
        # Counted only: the source logged this snapshot and each of its refusals as it applied them.
        self._count(applied.revision, errors=len(applied.report.errors))

    def _report(self, report: LoadReport) -> None:
        for error in report.errors:
            _log.error("policy refused; the last good version stays in force", error=str(error))
        for finding in report.findings:
            if finding.exactness is not Exactness.EXACT:
                _log.warning("policy translated", finding=str(finding))
        self._count(report.revision, errors=len(report.errors))
        if report.changed:
            _log.info("policies loaded", revision=report.revision, errors=len(report.errors))

    def _count(self, revision: int, *, errors: int) -> None:
        if self.metrics is not None:
            self.metrics.policy_revision.set(revision)
            if errors:
                self.metrics.policy_errors.inc(errors)
