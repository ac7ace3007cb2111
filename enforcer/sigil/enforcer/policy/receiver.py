"""Policies from the node agent: an enforcer follows ``WatchPolicies`` on the agent's socket.

The agent streams the policies that can apply to this workload (the README's Distribution section); each
snapshot replaces the previous one in a :class:`~sigil.enforcer.policy.store.PolicyStore` under one source name,
so the store's rule holds here too: a document this enforcer's schema refuses keeps its last good version. When
the agent goes away (a restart, a rollout of the DaemonSet) the stream ends; the policies in force stay, and the
source reconnects with the kit's exponential backoff (with jitter, so that a node's enforcers do not return in
lockstep) until the agent answers again, then adopts whatever snapshot it sends first.

The revision reported is the issuer's, carried in each snapshot, not the local store's counter: operators compare
an enforcer's ``sigil_enforcer_policy_revision`` with the issuer's ``sigil_policy_revision`` to find laggards.
grpclib, not grpcio: the agent is grpclib already, and this runs on the enforcer's own event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import structlog
from grpclib.client import Channel
from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError

from sigil.enforcer.errors import EnforcerError, PolicyError, PolicySourceError
from sigil.enforcer.policy.documents import (
    AcceptedPolicy,
    PolicyKey,
    SourceResult,
    document_key,
    judge,
)
from sigil.enforcer.policy.origin import Origin
from sigil.enforcer.policy.schema import Where
from sigil.enforcer.policy.store import LoadReport, PolicyStore
from sigil.enforcer.policy.wire import (
    SECURITY_HEADER,
    WATCH_POLICIES_CARDINALITY,
    WATCH_POLICIES_PATH,
    PolicySnapshot,
    WatchPoliciesRequest,
)
from sigil.kit import Backoff, Service, TaskOwner

__all__ = [
    "DEFAULT_AGENT_ENDPOINT",
    "AgentPolicies",
    "AgentPolicySource",
    "socket_path_of",
]

DEFAULT_AGENT_ENDPOINT = "unix:///run/sigil/agent.sock"
_SOURCE = "agent"
_HEADER = {SECURITY_HEADER: "true"}

_log = structlog.get_logger(__name__)

Subscriber = Callable[["AgentPolicies"], None]


@dataclass(frozen=True, slots=True)
class AgentPolicies:
    """One snapshot as applied: the issuer's revision and digest, the caller as attested, the local outcome."""

    revision: int
    digest: str
    namespace: str | None
    report: LoadReport
    pod_labels: Mapping[str, str] = field(default_factory=dict)
    namespace_labels: Mapping[str, str] = field(default_factory=dict)
    origins: Mapping[PolicyKey, Origin] = field(default_factory=dict)


def socket_path_of(endpoint: str) -> str:
    """The filesystem path of ``unix:///path`` (or ``unix:/path``, or a bare absolute path)."""
    path = endpoint.removeprefix("unix://") if endpoint.startswith("unix://") else endpoint
    path = path.removeprefix("unix:")
    if not path.startswith("/"):
        raise PolicySourceError(endpoint, "not a unix:///PATH socket address")
    return path


class AgentPolicySource(Service):
    """``async with AgentPolicySource() as source:`` keeps :attr:`store` equal to the agent's latest snapshot."""

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        store: PolicyStore | None = None,
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
        rng: random.Random | None = None,
    ) -> None:
        self.endpoint = (
            endpoint or os.environ.get("SPIFFE_ENDPOINT_SOCKET") or DEFAULT_AGENT_ENDPOINT
        )
        self._path = socket_path_of(self.endpoint)
        self.store = store if store is not None else PolicyStore()
        self._backoff = Backoff(first=backoff_initial, longest=backoff_max, rng=rng)
        self._current: AgentPolicies | None = None
        self._subscribers: list[Subscriber] = []
        self._changed = asyncio.Event()
        self._tasks = TaskOwner("agent policies")
        self._connected = False
        # The last snapshot's origins by their text: a change moves one policy, the others' origins are the same.
        self._origin_texts: dict[str, Origin] = {}

    @property
    def current(self) -> AgentPolicies | None:
        """The last snapshot applied (None before the first)."""
        return self._current

    @property
    def revision(self) -> int:
        """The issuer's revision of the policies in force (0 before the first snapshot)."""
        return 0 if self._current is None else self._current.revision

    @property
    def connected(self) -> bool:
        """True while a stream to the agent is open."""
        return self._connected

    def subscribe(self, callback: Subscriber) -> None:
        """Call ``callback`` on the loop after each snapshot is applied."""
        self._subscribers.append(callback)

    async def wait_for_revision(self, revision: int) -> AgentPolicies:
        """Return once a snapshot of at least ``revision`` is in force."""
        while self._current is None or self._current.revision < revision:
            await self._changed.wait()
        return self._current

    async def start(self) -> None:
        """Follow the agent in a task this source owns (:meth:`aclose` ends it)."""
        if not self._tasks.running:
            self._tasks.spawn(self.run(), name="sigil-agent-policies")

    async def aclose(self) -> None:
        """Stop following the agent; the policies in force stay in :attr:`store`."""
        tasks, self._tasks = self._tasks, TaskOwner("agent policies")
        await tasks.aclose()

    async def run(self) -> None:
        """Watch, and reconnect with backoff whenever the stream ends; runs until cancelled."""
        while True:
            try:
                received = await self._watch()
            except (GRPCError, StreamTerminatedError, ProtocolError, OSError) as err:
                received = False
                reason = err.message if isinstance(err, GRPCError) else str(err)
                _log.warning(
                    "policy stream from the agent ended; the last good policies stay",
                    endpoint=self.endpoint,
                    error=f"{type(err).__name__}: {reason}",
                    revision=self.revision,
                )
            finally:
                self._connected = False
            if received:
                self._backoff.reset()  # a stream that delivered: the next reconnect comes quickly
            await self._backoff.sleep(self._backoff.next_delay())

    async def _watch(self) -> bool:
        """One stream, until it ends; True when it delivered at least one snapshot."""
        received = False
        channel = Channel(path=self._path)
        try:
            async with channel.request(
                WATCH_POLICIES_PATH,
                WATCH_POLICIES_CARDINALITY,
                WatchPoliciesRequest,
                PolicySnapshot,
                metadata=_HEADER,
            ) as stream:
                await stream.send_message(WatchPoliciesRequest(), end=True)
                self._connected = True
                async for snapshot in stream:
                    self.apply(snapshot)
                    received = True
        finally:
            channel.close()
        return received

    def apply(self, snapshot: PolicySnapshot) -> AgentPolicies:
        """Adopt one snapshot: its documents replace the previous set (refused ones keep their last good)."""
        # Documents unchanged since the last snapshot keep their parsed policy: each is parsed once.
        report = self.store.apply(_judged(snapshot.policies, known=self.store.known()))
        for error in report.errors:
            _log.error(
                "policy from the agent refused; the last good version stays", error=str(error)
            )
        applied = AgentPolicies(
            revision=snapshot.revision,
            digest=snapshot.digest,
            namespace=snapshot.namespace or None,
            pod_labels=dict(snapshot.pod_labels),
            namespace_labels=dict(snapshot.namespace_labels),
            report=report,
            origins=self._origins(snapshot, self.store.known()),
        )
        self._current = applied
        _log.info(
            "policies from the agent",
            revision=applied.revision,
            policies=len(self.store.current.policies),
            changed=report.changed,
        )
        for callback in list(self._subscribers):
            callback(applied)
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        return applied

    def _origins(
        self, snapshot: PolicySnapshot, accepted: Mapping[str, AcceptedPolicy]
    ) -> dict[PolicyKey, Origin]:
        """Each policy's origin as the agent sent it beside its document; an agent too old to send any sends none.

        ``accepted`` (canonical text -> policy) names the documents without decoding them again, and an origin
        the last snapshot carried as the same text is not decoded again either.
        """
        found: dict[PolicyKey, Origin] = {}
        parsed, self._origin_texts = self._origin_texts, {}
        for text, origin in zip(snapshot.policies, snapshot.origins, strict=False):
            if not origin:
                continue
            try:
                seen = accepted.get(text)
                key = seen.key if seen is not None else document_key(json.loads(text))
                if key is None:
                    continue
                known = parsed.get(origin)
                if known is None:
                    raw = json.loads(origin)
                    if not isinstance(raw, Mapping):
                        continue
                    known = Origin.parse(raw)
                self._origin_texts[origin] = found[key] = known
            except (ValueError, EnforcerError):
                continue  # provenance is informational: an unreadable entry leaves its policy's unknown
        return found


def _judged(texts: Iterable[str], *, known: Mapping[str, AcceptedPolicy]) -> SourceResult:
    """Judge one snapshot's documents; one that is not even JSON makes the snapshot broken (everything stays).

    The agent sends each document as its canonical text, the key of ``known``: a document this enforcer
    accepted before is taken as it was, without being decoded, re-encoded or parsed again, and a new one is
    judged and keeps the text it came as (the agent wrote it canonical; see :func:`judge`).
    """
    held: dict[int, AcceptedPolicy] = {}
    documents: list[tuple[object, Where]] = []
    judged_texts: list[str] = []
    order: list[int] = []  # every readable document's number, in the snapshot's order
    unreadable: list[EnforcerError] = []
    for number, text in enumerate(texts):
        seen = known.get(text)
        if seen is not None:
            held[number] = seen
            order.append(number)
            continue
        try:
            documents.append((json.loads(text), Where(_SOURCE, number)))
            judged_texts.append(text)
            order.append(number)
        except ValueError as err:
            unreadable.append(PolicyError(_SOURCE, "", f"a JSON document ({err})", document=number))
    # The agent sends each document as the canonical text it holds (the issuer's): not written again here.
    result = judge(documents, source=_SOURCE, known=known, from_json=True, texts=judged_texts)
    if held:
        # Back in the snapshot's order: the held documents where they stood, the judged ones in between.
        judged = iter(result.outcomes)
        outcomes = [held[number] if number in held else next(judged) for number in order]
        result = dataclasses.replace(
            result,
            accepted=tuple(o for o in outcomes if isinstance(o, AcceptedPolicy)),
            outcomes=tuple(outcomes),
        )
    if not unreadable:
        return result
    return dataclasses.replace(result, errors=(*unreadable, *result.errors), broken=True)
