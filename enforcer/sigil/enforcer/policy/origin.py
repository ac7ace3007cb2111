"""Where a policy in force came from, and which version of it is in force: the provenance the effective view shows.

GEP-3779's reviewers asked that a workload owner can "easily and deterministically figure out the effective
policy" of a workload; an answer that says *which* rule decides is only useful when it also says where that rule
lives, so it can be changed: a file and the document within it, the admin API, or a CRD object with its
``metadata.generation`` (what ``kubectl get -o yaml`` shows). Each policy also has a revision of its own, a
digest of its canonical document, so two views of the same policy can be compared across hops without
comparing whole documents.

An origin is plain data with a JSON form (:meth:`Origin.to_dict`, :meth:`Origin.parse`) so it can travel with
the policy as an optional field: a peer that does not send one leaves the view saying "source unknown".
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sigil.enforcer.errors import PolicyError, RequestError
from sigil.enforcer.policy.documents import AcceptedPolicy, PolicyKey

__all__ = [
    "KeptByPolicy",
    "Origin",
    "OriginKind",
    "OriginWire",
    "origins_of",
    "policy_revision",
    "wire_origins",
]

_T = TypeVar("_T")


class OriginKind(enum.Enum):
    """The kinds of policy source Sigil reads."""

    FILE = "file"
    ADMIN = "admin"
    CRD = "crd"


@dataclass(frozen=True, slots=True, kw_only=True)
class Origin:
    """One policy's source: ``name`` is the file path, ``admin``, or the CRD object's ``namespace/name``.

    ``document`` is the index of the document within a file (from 0, counting non-empty documents only);
    ``generation`` the CRD object's ``metadata.generation``; ``revision`` the policy's own revision
    (:func:`policy_revision` of its canonical document).
    """

    kind: OriginKind
    name: str
    document: int | None = None
    generation: int | None = None
    revision: str | None = None

    def __str__(self) -> str:
        if self.kind is OriginKind.FILE:
            where = f"file {self.name}"
            if self.document is not None:
                where += f", document {self.document}"
        elif self.kind is OriginKind.CRD:
            where = f"CRD {self.name}"
            if self.generation is not None:
                where += f", generation {self.generation}"
        else:
            where = "admin API"
        return where if self.revision is None else f"{where} (revision {self.revision})"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``kind``, ``name``, ``document``, ``generation``, ``revision`` (absent ones as null)."""
        return {
            "kind": self.kind.value,
            "name": self.name,
            "document": self.document,
            "generation": self.generation,
            "revision": self.revision,
        }

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Origin:
        """The inverse of :meth:`to_dict`; raises :class:`RequestError` naming the field that is wrong."""
        kinds = _KINDS
        kind = raw.get("kind")
        if kind not in kinds:
            raise RequestError("origin.kind", repr(kind), f"one of {', '.join(kinds)}")
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            raise RequestError("origin.name", repr(name), "a non-empty string")
        revision = raw.get("revision")
        if revision is not None and not isinstance(revision, str):
            raise RequestError("origin.revision", repr(revision), "a string or null")
        return cls(
            kind=kinds[kind],
            name=name,
            document=_count(raw, "document"),
            generation=_count(raw, "generation"),
            revision=revision,
        )


_KINDS = {kind.value: kind for kind in OriginKind}


def origins_of(
    outcomes: Iterable[AcceptedPolicy | PolicyError], raw: Sequence[object] | None
) -> dict[PolicyKey, Origin]:
    """Each accepted policy's origin from ``raw``, the list sent beside the documents (same order).

    Provenance is an optional, informational field of the wire (an older peer sends none, a newer one may
    send a kind this one does not know): an entry that is missing or does not parse leaves its policy's
    origin unknown and never refuses the policy.
    """
    found: dict[PolicyKey, Origin] = {}
    for number, outcome in enumerate(outcomes):
        entry = raw[number] if raw is not None and number < len(raw) else None
        if isinstance(outcome, PolicyError) or not isinstance(entry, Mapping):
            continue
        try:
            found[outcome.key] = Origin.parse(entry)
        except RequestError:
            continue
    return found


def wire_origins(
    accepted: Iterable[AcceptedPolicy], origins: Mapping[PolicyKey, Origin]
) -> list[dict[str, Any] | None]:
    """The list sent beside ``accepted``'s documents: each one's origin as JSON, None where unknown."""
    return [
        None if (origin := origins.get(policy.key)) is None else origin.to_dict()
        for policy in accepted
    ]


class KeptByPolicy(Generic[_T]):
    """What was worked out from a policy and its origin, kept from one pass over the set in force to the next.

    A pass (:meth:`begin`, then :meth:`get` for each policy) drops what the previous pass did not ask for. The
    lookup is by the policy object (both the issuer and the agent keep it across revisions while its document is
    unchanged), because hashing an origin costs about as much as the work kept; the origin is compared only on a
    hit. The kept entry holds its policy alive, so an id seen here is that policy's until the entry is dropped.
    """

    def __init__(self) -> None:
        self._last: dict[int, tuple[AcceptedPolicy, Origin, _T]] = {}
        self._now: dict[int, tuple[AcceptedPolicy, Origin, _T]] = {}

    def begin(self) -> None:
        """Start a pass: what this pass does not ask for is dropped at the next one."""
        self._last, self._now = self._now, {}

    def get(
        self, policy: AcceptedPolicy, origin: Origin, make: Callable[[AcceptedPolicy, Origin], _T]
    ) -> _T:
        """What ``make`` gave for ``policy`` with an equal origin last pass, else ``make(policy, origin)``."""
        entry = self._last.get(id(policy))
        if (
            entry is None
            or entry[0] is not policy
            or not (entry[1] is origin or entry[1] == origin)
        ):
            entry = (policy, origin, make(policy, origin))
        self._now[id(policy)] = entry
        return entry[2]


class OriginWire:
    """:func:`wire_origins` for a set that changes a little at a time: each origin's JSON is kept to the next set.

    The issuer's feed and the agent's stored copy write the origins of every policy in force (1,001 of them in
    bench/propagate.py) for each revision, where a change moves one or two of them. What was written for a
    policy is kept, by the policy object (which both sides keep across revisions while its document is
    unchanged), and reused when its origin is still the same; what left the set is dropped
    (:class:`KeptByPolicy`). The dicts handed out are shared between sets: read them, never change them.
    """

    def __init__(self) -> None:
        self._kept: KeptByPolicy[tuple[dict[str, Any], str]] = KeptByPolicy()

    def encode(
        self, accepted: Iterable[AcceptedPolicy], origins: Mapping[PolicyKey, Origin]
    ) -> tuple[list[dict[str, Any] | None], list[str]]:
        """:func:`wire_origins` of ``accepted``, and each entry's JSON text ("null" where unknown)."""
        self._kept.begin()
        dicts: list[dict[str, Any] | None] = []
        texts: list[str] = []
        for policy in accepted:
            origin = origins.get(policy.key)
            if origin is None:
                dicts.append(None)
                texts.append("null")
                continue
            as_dict, text = self._kept.get(policy, origin, _encoded)
            dicts.append(as_dict)
            texts.append(text)
        return dicts, texts


def _encoded(_policy: AcceptedPolicy, origin: Origin) -> tuple[dict[str, Any], str]:
    as_dict = origin.to_dict()
    return as_dict, json.dumps(as_dict, sort_keys=True)


def policy_revision(canonical: str) -> str:
    """A policy's own revision: the first 12 hex digits of the SHA-256 of its canonical document."""
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def _count(raw: Mapping[str, Any], field: str) -> int | None:
    value = raw.get(field)
    # bool is an int in Python; JSON's true is not a count.
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return value
    raise RequestError(f"origin.{field}", repr(value), "a non-negative integer or null")
