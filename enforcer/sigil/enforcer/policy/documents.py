"""Raw policy documents in, accepted and refused policies out: the one place Sigil judges a policy document.

Policies reach Sigil as documents from many places: YAML files, the admin API, the CRDs, the issuer's feed, the
agent's stream. Every one of them comes through :func:`judge`, so a document means the same everywhere. Each
document is judged alone, so one bad policy never takes down the others; a refusal names the source, the
document, the field path and what was expected, and says which policy the broken document *meant* to be when
that can still be read, so the store can keep that policy's last good version.

An accepted policy keeps its document in canonical JSON (keys sorted, no spaces, YAML-only scalars such as dates
turned into strings), which is what the issuer digests and sends, the agent mirrors and stores, and the enforcer
receives: documents are serialised once, where they are judged, and carried as they are from then on.
"""

from __future__ import annotations

import json
import marshal
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sigil.enforcer.errors import EnforcerError, PolicyError
from sigil.enforcer.policy.dialects.base import Finding, SourcedDocument
from sigil.enforcer.policy.model import AuthorizationPolicy, Policy, parse_policy
from sigil.enforcer.policy.resources import KINDS
from sigil.enforcer.policy.schema import Where

__all__ = [
    "AcceptedPolicy",
    "PolicyKey",
    "SourceResult",
    "broken_source",
    "document_key",
    "judge",
    "policy_key",
]

PolicyKey = tuple[str, str, str]
"""A policy's identity: (kind, namespace or "", name)."""


def policy_key(policy: Policy) -> PolicyKey:
    """The identity of ``policy``: two documents with the same key describe the same policy."""
    if isinstance(policy, AuthorizationPolicy):
        return (policy.kind, policy.namespace, policy.name)
    return (policy.kind, "", policy.name)


def document_key(document: object) -> PolicyKey | None:
    """Which policy a (possibly refused) document names, if its kind and names can still be read."""
    if not isinstance(document, Mapping):
        return None
    kind, metadata = document.get("kind"), document.get("metadata")
    # A kind we do not know could be a typo of either kind: which policy it meant is unknowable.
    if kind not in KINDS or not isinstance(metadata, Mapping):
        return None
    name, namespace = metadata.get("name"), metadata.get("namespace", "")
    if not isinstance(name, str) or not isinstance(namespace, str):
        return None
    return (str(kind), namespace, name)


@dataclass(frozen=True, slots=True)
class AcceptedPolicy:
    """A policy that passed the schema, with the document it was read from as JSON and as canonical text.

    ``key`` is the policy's identity, worked out once: every hop looks a thousand policies up by it per change.
    """

    policy: Policy
    document: Mapping[str, Any] = field(compare=False)
    canonical: str
    key: PolicyKey = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", policy_key(self.policy))


@dataclass(frozen=True, slots=True)
class SourceResult:
    """What one source (a file, the admin table, a CRD collection, a feed) yielded, judged document by document.

    ``broken`` means the source as a whole cannot be trusted (not YAML, unreadable, or a refused document whose
    identity cannot be read), so the store keeps everything the source last held. Otherwise ``refused`` names
    the policies whose new version was refused, so the store keeps their last good version. ``outcomes`` holds,
    in input order, each document's accepted policy or refusal. ``foreign`` holds the documents of other meshes
    a file reader set aside for its directory's translation (:mod:`.foreign`), ``findings`` what a translation
    said about the documents it translated.
    """

    source: str
    accepted: tuple[AcceptedPolicy, ...] = ()
    errors: tuple[EnforcerError, ...] = ()
    refused: frozenset[PolicyKey] = frozenset()
    broken: bool = False
    outcomes: tuple[AcceptedPolicy | PolicyError, ...] = ()
    foreign: tuple[SourcedDocument, ...] = ()
    findings: tuple[Finding, ...] = ()

    @property
    def policies(self) -> tuple[Policy, ...]:
        """The accepted policies, in input order."""
        return tuple(accepted.policy for accepted in self.accepted)


def broken_source(source: str, error: EnforcerError) -> SourceResult:
    """The result of a source that could not be read at all: everything it last held stays."""
    return SourceResult(source, errors=(error,), broken=True)


def judge(
    documents: Iterable[tuple[object, Where]],
    *,
    source: str,
    known: Mapping[str, AcceptedPolicy] | None = None,
    from_json: bool = False,
    texts: Sequence[str] | None = None,
) -> SourceResult:
    """Judge each document alone; ``known`` (canonical text -> accepted) skips documents judged before.

    The schema's verdict depends on the document alone, so a document whose canonical text was accepted
    before is accepted again without being parsed twice in one process. ``from_json`` says the documents were
    decoded from JSON, so they are plain already (no dates, only string keys) and are not copied to make them so.
    ``texts`` (with ``from_json``), in the documents' order, are the texts they were decoded from, which their
    sender wrote as canonical text: each is kept as its document's instead of being written again. The schema
    still judges the decoded document, which is not looked up in ``known`` by that text (the caller looks a
    text up before decoding it); the text only names it, so one that is not canonical after all can only miss
    ``known`` next time (same text, same document), never change what is accepted.
    """
    accepted: list[AcceptedPolicy] = []
    errors: list[EnforcerError] = []
    refused: set[PolicyKey] = set()
    outcomes: list[AcceptedPolicy | PolicyError] = []
    broken = False
    known = known or {}
    # JSON documents are first matched by their policy's key and compared as values (9 us for a typical policy,
    # where writing its canonical text costs 20): a feed of a thousand policies where one changed parses one.
    by_key = {a.key: a for a in known.values()} if from_json else {}
    for number, (document, where) in enumerate(documents):
        text = None if texts is None else texts[number]
        try:
            outcome = _accept(document, where, known, by_key, from_json=from_json, text=text)
        except PolicyError as err:
            errors.append(err)
            outcomes.append(err)
            key = document_key(document)
            if key is None:
                broken = True
            else:
                refused.add(key)
            continue
        accepted.append(outcome)
        outcomes.append(outcome)
    return SourceResult(
        source, tuple(accepted), tuple(errors), frozenset(refused), broken, tuple(outcomes)
    )


def _accept(
    document: object,
    where: Where,
    known: Mapping[str, AcceptedPolicy],
    by_key: Mapping[PolicyKey, AcceptedPolicy],
    *,
    from_json: bool,
    text: str | None = None,
) -> AcceptedPolicy:
    if by_key:
        key = document_key(document)
        seen = by_key.get(key) if key is not None else None
        if seen is not None and _same_json(seen.document, document):
            return seen
    plain: Any = document if from_json else _plain(document)
    if from_json and text is not None:
        # Not looked up in ``known`` by the text: only the document's own canonical text may name it there.
        return AcceptedPolicy(parse_policy(document, where=where), plain, text)
    canonical = _canonical(plain)
    seen = known.get(canonical)
    # Only a document that was plain JSON already is the document ``known`` judged: YAML's unquoted date is
    # refused where its quoted twin, with the same canonical text, is accepted.
    if seen is not None and (from_json or plain == document):
        return seen
    return AcceptedPolicy(parse_policy(document, where=where), plain, canonical)


def _same_json(known: Any, document: Any) -> bool:
    """True when two decoded JSON documents are the same text up to whitespace, ``==`` first as it is cheapest.

    ``==`` alone is not enough: it holds 1, 1.0 and true equal, which the schema does not. marshal's format 2
    writes each value with its type and no back-references, so equal bytes mean equal types and values in the
    same key order; a difference only costs the canonical text after all.
    """
    return known == document and marshal.dumps(known, 2) == marshal.dumps(document, 2)


def _plain(value: object) -> Any:
    """A JSON-safe copy: YAML may hold dates, or non-string keys, in places the schema leaves open."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if value is None or isinstance(value, str | int | float):
        return value
    return str(value)


def _canonical(document: object) -> str:
    return json.dumps(document, sort_keys=True, separators=(",", ":"))
