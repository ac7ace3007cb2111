"""Policies out to the agents: the set in force from every source, under a revision shared by replicas, long-polled.

Sources (:mod:`sigil.issuer.policies.sources`): a directory of YAML files this replica polls every
``policy.poll_interval``, policies applied through the admin API (kept in the datastore, :mod:`.tables`, so they
reach every replica and survive restarts), and the ``authz.sigil.dev`` CRDs (fed by
:mod:`sigil.issuer.policies.crd_source`). A refused document changes nothing in force; it is logged and counted.

Agents wait as for the bundle: a change wakes every waiter at once, so a policy edit reaches agents within the
poll interval, and another replica's admin change within the same interval (the datastore row is polled too).
Every agent of the cluster is answered the same set, so its JSON is encoded once per revision
(:meth:`PolicyFeed.wait_encoded`), from the canonical text each policy already carries, not once per agent. A
change moves one policy among many, so each origin's JSON is kept from one revision to the next
(:class:`~sigil.enforcer.policy.origin.OriginWire`), and the set as a dict (:meth:`PolicyFeed.current`, which
only the tests and tools read) is made when asked for, not at each revision. With 1,001 policies
(bench/propagate.py) this took the issuer's work per revision from 11-14 ms to 5-6 ms on a loaded machine.

An agent that names the set it holds (``held_digest``) is answered only what changed since, when that set is one
of the last few published (:mod:`.history`); the delta from each such set is encoded once per revision too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy.exc import SQLAlchemyError

from sigil.ca.errors import SigilError
from sigil.ca.spiffe_id import TrustDomain
from sigil.enforcer.errors import EnforcerError
from sigil.enforcer.policy.decision import Target
from sigil.enforcer.policy.defaults import DefaultPolicy
from sigil.enforcer.policy.dialects.base import Exactness, TranslateOptions
from sigil.enforcer.policy.documents import AcceptedPolicy, PolicyKey, SourceResult
from sigil.enforcer.policy.effective import EffectivePolicy, effective
from sigil.enforcer.policy.loader import parse_file
from sigil.enforcer.policy.origin import Origin, OriginWire
from sigil.enforcer.policy.schema import Where
from sigil.enforcer.policy.store import LoadReport
from sigil.issuer.agentapi import contract
from sigil.issuer.errors import NotFoundError, PolicyRefusedError
from sigil.issuer.metrics import IssuerMetrics
from sigil.issuer.policies.history import PolicyHistory, PublishedSet, delta_body
from sigil.issuer.policies.sources import PolicySources
from sigil.issuer.policies.tables import AdminPolicy, AdminTable, PolicyTables

__all__ = ["ADMIN_SOURCE", "PolicyAnswer", "PolicyFeed"]

log = structlog.get_logger(__name__)

#: The source name of admin-applied policies (sorts after every absolute file path).
ADMIN_SOURCE = "admin"


@dataclass(frozen=True, slots=True)
class PolicyAnswer:
    """The body an agent is sent, and whether it is a delta (else the whole set)."""

    body: bytes
    delta: bool


class PolicyFeed:
    """Holds the set in force and its revision; the owner runs :meth:`run` (and the CRD informers) as tasks."""

    def __init__(
        self,
        records: PolicyTables,
        metrics: IssuerMetrics,
        *,
        directory: Path | None,
        poll_interval: float,
        now: Callable[[], datetime],
        translation: TranslateOptions | None = None,
    ) -> None:
        self._records = records
        self._metrics = metrics
        self._poll_interval = poll_interval
        self._now = now
        #: How Istio's and Linkerd's documents are translated (the directory's, and the cluster's objects).
        self.translation = translation or TranslateOptions()
        self._sources = PolicySources(directory, translation=self.translation)
        self._lock = asyncio.Lock()
        self._changed = asyncio.Condition()
        self._admin_generation = -1
        self._namespaces: dict[str, dict[str, str]] = {}
        self._revision = 0
        self._digest = ""
        self._draining = False
        self._last_refusals: set[str] = set()
        # Each origin's wire form, kept from one build to the next (see the module docstring).
        self._origin_wire = OriginWire()
        self._origin_dicts: list[dict[str, Any] | None] = []
        self._origin_texts: list[str] = []
        # Made from the set in force when first asked for, once per revision (see the module docstring).
        self._response: contract.PolicyResponse | None = None
        self._encoded: bytes | None = None
        # The last sets answered, to write deltas from; each delta encoded once per revision, by base digest.
        self._history = PolicyHistory()
        self._deltas: dict[str, bytes] = {}
        self._publish_set()

    # ------------------------------------------------------------------ reading
    @property
    def revision(self) -> int:
        return self._revision

    def current(self) -> contract.PolicyResponse:
        """The set in force as the agents' API writes it."""
        if self._response is None:
            self._response = {
                "revision": self._revision,
                "digest": self._digest,
                "policies": [dict(accepted.document) for accepted in self._built_from],
                "origins": list(self._origin_dicts),
                "namespaces": self._wire_namespaces(),
            }
        return self._response

    def owners(self) -> dict[PolicyKey, str]:
        """The source each policy in force came from (a refused resource's last good version included)."""
        return self._sources.owners()

    def listing(self) -> list[dict[str, Any]]:
        """The policies in force with the source each came from (``sigil-server policy list``)."""
        return self._sources.listing()

    async def wait_encoded(self, *, after_revision: int | None, longest: float) -> bytes:
        """:meth:`wait`, then the set in force as the JSON body the route sends (encoded once per revision)."""
        await self.wait(after_revision=after_revision, longest=longest)
        # No await since the wait: what is encoded is the set in force when it ended.
        return self._full_body()

    def _full_body(self) -> bytes:
        if self._encoded is None:
            head = {
                "revision": self._revision,
                "digest": self._digest,
                "namespaces": self._wire_namespaces(),
            }
            self._encoded = contract.policy_response_body(
                head, (accepted.canonical for accepted in self._built_from), self._origin_texts
            )
        return self._encoded

    async def wait_answer(
        self, *, after_revision: int | None, held_digest: str | None, longest: float
    ) -> PolicyAnswer:
        """:meth:`wait`, then what changed since the set ``held_digest`` names, or the whole set when it is not kept."""
        await self.wait(after_revision=after_revision, longest=longest)
        # No await since the wait, as in wait_encoded.
        base = None if held_digest is None else self._history.get(held_digest)
        if base is None:
            return PolicyAnswer(self._full_body(), delta=False)
        delta = self._deltas.get(base.digest)
        if delta is None:
            delta = self._deltas[base.digest] = delta_body(base, self._published)
        return PolicyAnswer(delta, delta=True)

    async def wait(self, *, after_revision: int | None, longest: float) -> int:
        """Return once the revision differs from ``after_revision`` (or after ``longest`` s): the revision now.

        :meth:`current` and :meth:`wait_encoded` give the set of that revision until the next await.
        """
        if after_revision is None:
            return self._revision

        def moved() -> bool:
            return self._draining or self._revision != after_revision

        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(longest), self._changed:
                await self._changed.wait_for(moved)
        return self._revision

    async def drain(self) -> None:
        """Answer every waiter now (the server is shutting down)."""
        self._draining = True
        async with self._changed:
            self._changed.notify_all()

    # ------------------------------------------------------------------ sources
    async def load(self) -> None:
        """The first load, before serving: the directory, the admin table, and the shared revision."""
        await self._scan_directory()
        await self._poll_datastore()
        async with self._lock:
            await self._publish()

    async def apply_admin(self, text: str, *, file: str) -> list[dict[str, Any]]:
        """Apply every document of ``text`` through the admin table, or none when any is refused.

        ``in_force`` is False for a policy whose name a policy file already holds (the file wins).
        """
        result = parse_file(text, file=file)
        if result.errors or not result.accepted:
            self._count(result.errors, "admin")
            raise PolicyRefusedError(
                file, tuple(str(e) for e in result.errors) or ("no policy documents",)
            )
        applied = [AdminPolicy(*accepted.key, accepted.document) for accepted in result.accepted]
        table = await self._records.put_admin_policies(applied, now=self._now())
        async with self._lock:
            # Applies that ran at once may come back in any order: only a newer generation than the one in force
            # is taken (a poll may have taken this one, or a later one, already).
            if table.generation > self._admin_generation:
                # The table now holds exactly these documents: reading them back need not parse them again.
                self._adopt_admin(table, also=result.accepted)
                await self._publish()
        owners = self._sources.owners()
        return [
            {
                "kind": a.kind,
                "namespace": a.namespace,
                "name": a.name,
                "in_force": owners.get((a.kind, a.namespace, a.name)) == ADMIN_SOURCE,
            }
            for a in applied
        ]

    async def delete_admin(self, kind: str, namespace: str, name: str) -> None:
        if not await self._records.delete_admin_policy(kind, namespace, name, now=self._now()):
            raise NotFoundError(f"admin policy {kind} {namespace + '/' if namespace else ''}{name}")
        await self._poll_datastore()

    async def set_source(
        self,
        source: str,
        documents: Sequence[tuple[object, Where]],
        *,
        origins: Sequence[Origin | None] | None = None,
    ) -> SourceResult:
        """Replace one source's documents (the CRD informers call this with every object they hold).

        ``origins`` names each document's object (and its generation), in order. Returns how each document
        was judged, so the caller can report it back (the CRDs' status).
        """
        async with self._lock:
            result = self._sources.judge(documents, source=source)
            self._report(self._sources.apply(result, origins=origins), "kubernetes")
            await self._publish()
        return result

    async def set_namespaces(self, namespaces: Mapping[str, Mapping[str, str]]) -> None:
        """The cluster's namespaces and their labels, for cluster policies' ``namespaceSelector``."""
        async with self._lock:
            self._namespaces = {ns: dict(labels) for ns, labels in namespaces.items()}
            await self._publish()

    # ------------------------------------------------------------------ the poll loop
    async def run(self) -> None:
        """Poll the directory's files and the datastore's policy row forever (a task the app owns)."""
        while True:
            await asyncio.sleep(self._poll_interval)
            try:
                await self._scan_directory()
                await self._poll_datastore()
            except (SigilError, SQLAlchemyError, OSError) as err:
                log.warning("policy.poll_failed", detail=str(err))

    async def _scan_directory(self) -> None:
        async with self._lock:
            try:
                reports = await self._sources.scan_directory()
            except EnforcerError as err:  # the directory itself is gone: keep everything it held
                log.warning("policy.directory_unreadable", detail=str(err))
                return
            for report in reports:
                self._report(report, "file")
            if reports:
                await self._publish()

    async def _poll_datastore(self) -> None:
        state = await self._records.state()
        async with self._lock:
            if state.admin_generation != self._admin_generation:
                policies = await self._records.admin_policies()
                self._adopt_admin(AdminTable(state.admin_generation, policies))
                await self._publish()
            elif state.digest == self._digest and state.revision > self._revision:
                # Another replica numbered this same content later (it changed, then changed back): follow it.
                await self._set_revision(state.revision)

    def _adopt_admin(self, table: AdminTable, *, also: Sequence[AcceptedPolicy] = ()) -> None:
        """Judge the admin table's documents into the sources (under ``_lock``); ``also`` were judged already."""
        documents = [(p.document, Where(_admin_ref(p))) for p in table.policies]
        result = self._sources.judge(documents, source=ADMIN_SOURCE, also=also)
        self._report(self._sources.apply(result), "admin")
        self._admin_generation = table.generation

    # ------------------------------------------------------------------ revisions
    def _report(self, report: LoadReport, source_kind: str) -> None:
        # A name clash between sources is repeated in every report until resolved; count each refusal once
        # per appearance, not once per unrelated change.
        fresh = [e for e in report.errors if str(e) not in self._last_refusals]
        self._last_refusals = {str(e) for e in report.errors}
        self._count(fresh, source_kind)
        for finding in report.findings:
            if finding.exactness is Exactness.APPROXIMATE:
                log.warning("policy.translated", source=source_kind, detail=str(finding))

    def _count(self, errors: Sequence[EnforcerError], source_kind: str) -> None:
        for error in errors:
            self._metrics.policy_refusals.labels(source_kind).inc()
            log.warning("policy.refused", source=source_kind, detail=str(error))

    async def _publish(self) -> None:
        """Number the content now in force (under ``_lock``) and wake waiters if it moved."""
        digest = contract.policy_set_digest(
            (accepted.canonical for accepted in self._sources.in_force), self._namespaces
        )
        if digest == self._digest:
            return
        # The row only ever moves forward and this replica took its revision from it, so a new digest always
        # gets a higher number here: the revision an agent sees from one replica never goes back.
        revision = await self._records.settle(digest, now=self._now())
        self._digest = digest
        await self._set_revision(revision)

    async def _set_revision(self, revision: int) -> None:
        self._revision = revision
        self._metrics.policy_revision.set(revision)
        self._publish_set()
        async with self._changed:
            self._changed.notify_all()

    def effective(
        self,
        target: Target,
        *,
        trust_domain: TrustDomain,
        default: DefaultPolicy = DefaultPolicy.ALLOW,
        port: int | None = None,
    ) -> EffectivePolicy:
        """The effective policy of ``target`` under the set in force (``sigil-server policy effective``)."""
        return effective(
            self._sources.policies(),
            target,
            trust_domain=trust_domain,
            namespace_labels=self._namespaces.get(target.namespace, {}),
            default=default,
            port=port,
            origins=self._sources.origins(),
            revision=self._revision,
        )

    def origins(self) -> dict[PolicyKey, Origin]:
        """Where each policy in force came from, with its own revision."""
        return self._sources.origins()

    def _publish_set(self) -> None:
        """Take the set now in force as the one answered (its revision set already)."""
        # The accepted policies the answers' documents are taken from: their canonical text encodes them.
        self._built_from = self._sources.in_force
        self._origin_dicts, self._origin_texts = self._origin_wire.encode(
            self._built_from, self._sources.origins()
        )
        self._response = None
        self._encoded = None
        self._published = PublishedSet(
            self._revision,
            self._digest,
            {
                accepted.key: (accepted.canonical, origin)
                for accepted, origin in zip(self._built_from, self._origin_texts, strict=True)
            },
            self._wire_namespaces(),
        )
        if self._digest:  # not the empty set before the first load, which no agent was answered
            self._history.record(self._published)
        self._deltas = {}

    def _wire_namespaces(self) -> dict[str, dict[str, str]]:
        return {ns: dict(labels) for ns, labels in sorted(self._namespaces.items())}


def _admin_ref(policy: AdminPolicy) -> str:
    """How refusals name an admin policy: ``admin AuthorizationPolicy shop/db``."""
    where = f"{policy.namespace}/{policy.name}" if policy.namespace else policy.name
    return f"admin {policy.kind} {where}"
