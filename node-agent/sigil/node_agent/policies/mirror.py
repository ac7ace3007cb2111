"""The authorization policies the agent hands to local enforcers, kept current by the issuer's policy long poll.

One request waits on the issuer until its policy revision moves (a file, an admin apply, a CRD, a namespace's
labels) or ``rotation.bundle_wait`` passes, so a change reaches the node within a round trip, as bundles do
(``bundle_sync.py``). While the issuer is away the agent keeps the last set it had and retries with backoff.

The last set is also written to ``agent.data_dir/policies.json`` (atomically, mode 0600) and read back at start:
a restarted agent serves policy to enforcers at once, even with the issuer away, instead of making every
enforcer on the node wait for the issuer (they keep theirs in memory, but a pod started meanwhile has none).
A stored set that cannot be read, or whose documents are not what its digest says (changed on disk), is not
served: it is ignored with a warning, and enforcers wait for the issuer's answer as they would with no file.

Each request names the set held (its digest), so the issuer answers only what changed since; the client applies
that delta and checks the result against the issuer's digest, fetching the whole set on any mismatch, so what is
adopted here is always a set the issuer holds (:mod:`sigil.issuer.client.policy_delta`). A stored set read back
at start is a base too: a restarted agent is answered a delta as well.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import structlog

from sigil.ca.errors import SigilError
from sigil.ca.keys import write_secret_file
from sigil.enforcer.policy import AcceptedPolicy, PolicyKey
from sigil.enforcer.policy.origin import Origin, OriginWire, wire_origins
from sigil.issuer.client import PolicyUpdate, policy_response_body
from sigil.node_agent.identity_source import ChangeFeed
from sigil.node_agent.rotation import Backoff, poll_forever
from sigil.node_agent.upstream.issuer_link import call_issuer

__all__ = ["POLICY_FILE", "MirroredPolicies", "PolicyFeedApi", "PolicyMirror"]

POLICY_FILE = "policies.json"

_log = structlog.get_logger(__name__)


class PolicyFeedApi(Protocol):
    """The one issuer call this needs; :class:`~sigil.issuer.client.IssuerClient` provides it."""

    async def policies(
        self,
        after_revision: int | None = None,
        *,
        wait: float | None = None,
        known: Mapping[str, AcceptedPolicy] | None = None,
        held: PolicyUpdate | None = None,
    ) -> PolicyUpdate: ...


@dataclass(frozen=True, slots=True)
class MirroredPolicies:
    """One revision of the issuer's policy set: each accepted policy with its canonical document, namespace labels."""

    revision: int
    digest: str
    entries: tuple[AcceptedPolicy, ...]
    namespaces: Mapping[str, Mapping[str, str]]
    origins: Mapping[PolicyKey, Origin] = field(default_factory=dict)

    @classmethod
    def of(cls, update: PolicyUpdate) -> MirroredPolicies:
        """The state of ``update``; documents this agent's schema refused are left out (and logged)."""
        for error in update.refused:
            _log.warning("policy from the issuer refused by this agent's schema", error=str(error))
        return cls(
            update.revision,
            update.digest,
            tuple(sorted(update.accepted, key=lambda accepted: accepted.key)),
            {ns: dict(labels) for ns, labels in update.namespaces.items()},
            dict(update.origins),
        )

    def encoded(self, origins: OriginWire) -> bytes:
        """:meth:`wire` as JSON, each policy written from its canonical text rather than encoded again.

        ``origins`` (the one the last state was written with) spares encoding the origins that did not change.
        """
        _, origin_texts = origins.encode(self.entries, self.origins)
        head = {
            "revision": self.revision,
            "digest": self.digest,
            "namespaces": {ns: dict(labels) for ns, labels in self.namespaces.items()},
        }
        return policy_response_body(
            head, (accepted.canonical for accepted in self.entries), origin_texts
        )

    def wire(self) -> dict[str, Any]:
        """The state as the issuer's ``GET /v1/agent/policies`` body, which is how it is stored."""
        return {
            "revision": self.revision,
            "digest": self.digest,
            "policies": [dict(a.document) for a in self.entries],
            "namespaces": {ns: dict(labels) for ns, labels in self.namespaces.items()},
            "origins": wire_origins(self.entries, self.origins),
        }


class PolicyMirror:
    """Holds the :class:`MirroredPolicies` in force (None before any); :meth:`run` keeps it current."""

    def __init__(
        self,
        issuer: PolicyFeedApi,
        *,
        wait: float,
        backoff: Backoff,
        directory: Path | None = None,
    ) -> None:
        self._issuer = issuer
        self._wait = wait
        self._backoff = backoff
        self._path = None if directory is None else directory / POLICY_FILE
        self._state: MirroredPolicies | None = None
        # The update the state was made from: the base the next request names.
        self._update: PolicyUpdate | None = None
        # The stored copy's origins, kept from one state to the next (a change moves one or two of 1,001).
        self._origin_wire = OriginWire()
        #: Notified after every new state; the policy streams wait on it.
        self.changes = ChangeFeed()

    @property
    def state(self) -> MirroredPolicies | None:
        """The set in force, or None until the first answer (or stored set)."""
        return self._state

    async def load_stored(self) -> bool:
        """Adopt the set the last run stored, if there is one that reads; True when one was adopted."""
        if self._path is None or self._state is not None:
            return False
        try:
            text = await asyncio.to_thread(self._path.read_text, encoding="utf-8")
            update = PolicyUpdate.parse(json.loads(text))
            state = MirroredPolicies.of(update)
        except FileNotFoundError:
            return False
        except (OSError, ValueError, KeyError, TypeError) as err:
            _log.warning("stored policies unreadable; waiting for the issuer", error=str(err))
            return False
        if update.held is None:
            # Not the set the issuer numbered (changed on disk since, or never whole): serving it could drop a
            # deny the issuer holds. Enforcers wait for the issuer instead, as with no file at all.
            _log.warning(
                "stored policies do not match their digest; waiting for the issuer",
                revision=update.revision,
            )
            return False
        self._update = update
        self._adopt(state)
        _log.info("serving the stored policies until the issuer answers", revision=state.revision)
        return True

    async def refresh(self, *, wait: float | None = None) -> bool:
        """One request (a long poll with ``wait``); True when the set changed. Raises IssuerUnreachableError."""
        after = None if self._state is None else self._state.revision
        # What this agent accepted last time is not parsed again: a change of one policy parses one document.
        known = None if self._state is None else {a.canonical: a for a in self._state.entries}
        update = await call_issuer(
            self._issuer.policies(after, wait=wait, known=known, held=self._update)
        )
        if update.delta_refused is not None:
            # A delta that did not add up: the client fetched the whole set instead (a bug worth a report).
            _log.warning("policy.delta_refused", reason=update.delta_refused)
        if self._state is not None and update.revision == self._state.revision:
            self._update = update
            return False
        self._update = update
        state = MirroredPolicies.of(update)
        # Stored before it is served, so an agent stopped right after a stream saw the set restarts with that set
        # and never hands an enforcer that outlived it an older one. Without fsync (4-6 ms a change, more on a
        # network disk, before any enforcer hears of it): an agent that stops, or is killed, still leaves the
        # file whole in the kernel's cache; a power loss that could lose it also stops every enforcer on the node,
        # which keep their policies in memory only, so none is left holding a newer set. An empty or old file
        # read back at start is taken as it is read (an empty one as none).
        if self._path is not None:
            try:
                encoded = state.encoded(self._origin_wire)
                await asyncio.to_thread(write_secret_file, self._path, encoded, durable=False)
            except SigilError as err:
                # Serving matters more than storing: the set goes in force; only a restart would miss it.
                _log.warning("cannot store the policies", error=str(err))
        self._adopt(state)
        _log.info("policies updated", revision=state.revision, policies=len(state.entries))
        return True

    def _adopt(self, state: MirroredPolicies) -> None:
        self._state = state
        self.changes.notify()

    async def run(self) -> None:
        """Long-poll forever; the owner cancels it on shutdown."""
        await poll_forever(lambda: self.refresh(wait=self._wait), self._backoff, what="policy")
