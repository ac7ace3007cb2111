"""The policies the issuer holds, per source, with the documents agents are sent.

The enforcer's :class:`~sigil.enforcer.policy.store.PolicyStore` decides what is in force (last good version per
source, a refused document never removes what was in force, a duplicate name loses to the source that sorts
first). Agents, however, need the resources themselves, not our parsed objects, so they can parse them with the
same schema on their side; this book keeps, beside the store, the document of every policy's last good version,
following the store's own merge rule, and hands out the documents of exactly the set in force.

Sources are named so they sort in a fixed order: a directory's files by absolute path (``/...``), then
``admin``, then ``kubernetes:...``; on a name clash the file wins, as the store's rule says.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from sigil.enforcer.errors import EnforcerError, PolicyError, PolicySourceError
from sigil.enforcer.policy import Policy, parse_policy
from sigil.enforcer.policy.loader import FileResult, PolicyKey, parse_file, policy_key
from sigil.enforcer.policy.schema import Where
from sigil.enforcer.policy.store import LoadReport, PolicyStore

__all__ = ["Document", "PolicyBook", "document_key", "judge_documents"]

Document = Mapping[str, Any]


def document_key(document: object) -> PolicyKey | None:
    """The (kind, namespace, name) a document names, when it names one readably."""
    if not isinstance(document, Mapping):
        return None
    kind, metadata = document.get("kind"), document.get("metadata")
    if not isinstance(kind, str) or not isinstance(metadata, Mapping):
        return None
    name, namespace = metadata.get("name"), metadata.get("namespace", "")
    if not isinstance(name, str) or not isinstance(namespace, str):
        return None
    return (kind, namespace, name)


def judge_documents(
    source: str, documents: Sequence[tuple[object, Where]]
) -> tuple[FileResult, dict[PolicyKey, Document]]:
    """Parse each document alone: the accepted policies with their documents, and precise refusals."""
    policies: list[Policy] = []
    errors: list[EnforcerError] = []
    refused: set[PolicyKey] = set()
    accepted: dict[PolicyKey, Document] = {}
    broken = False
    for document, where in documents:
        try:
            policy = parse_policy(document, where=where)
        except PolicyError as err:
            errors.append(err)
            key = document_key(document)
            if key is None:
                broken = True
            else:
                refused.add(key)
            continue
        policies.append(policy)
        accepted[policy_key(policy)] = _plain(document)
    result = FileResult(source, tuple(policies), tuple(errors), frozenset(refused), broken)
    return result, accepted


def _plain(document: object) -> Document:
    """A JSON-safe copy (YAML may have produced dates or other non-JSON scalars in ignored places)."""
    plain: Document = json.loads(json.dumps(document, default=str))
    return plain


class PolicyBook:
    """A :class:`PolicyStore` plus the documents of what it holds; not thread-safe, used on the event loop."""

    def __init__(self) -> None:
        self._store = PolicyStore()
        self._documents: dict[str, dict[PolicyKey, Document]] = {}

    @property
    def sources(self) -> list[str]:
        return sorted(self._documents)

    def apply(self, result: FileResult, documents: Mapping[PolicyKey, Document]) -> LoadReport:
        """Take in one source's new content; the store's merge rule decides what stays."""
        old = self._documents.get(result.file)
        if not (result.broken and old is not None):
            fresh = {policy_key(p): documents[policy_key(p)] for p in result.policies}
            for key in result.refused:
                if old is not None and key in old and key not in fresh:
                    fresh[key] = old[key]
            self._documents[result.file] = fresh
        return self._store.apply(result)

    def apply_text(self, text: str, *, source: str) -> LoadReport:
        """Take in a YAML file's text (one or more documents)."""
        result = parse_file(text, file=source)
        documents: dict[PolicyKey, Document] = {}
        try:
            loaded = [d for d in yaml.safe_load_all(text) if d is not None]
        except yaml.YAMLError:
            loaded = []  # parse_file has already said why; nothing of this text is accepted
        for document in loaded:
            key = document_key(document)
            if key is not None:
                documents[key] = _plain(document)
        return self.apply(result, documents)

    def apply_path(self, path: Path) -> LoadReport:
        """Read a policy file (blocking: call in a worker thread); an unreadable file keeps what it held."""
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
            broken = FileResult(
                str(path), errors=(PolicySourceError(str(path), reason),), broken=True
            )
            return self.apply(broken, {})
        return self.apply_text(text, source=str(path))

    def remove(self, source: str) -> LoadReport:
        self._documents.pop(source, None)
        return self._store.remove(source)

    def owners(self) -> dict[PolicyKey, str]:
        """Which source each policy in force came from (the first source, in name order, holding its name)."""
        found: dict[PolicyKey, str] = {}
        for source in sorted(self._documents):
            for key in self._documents[source]:
                found.setdefault(key, source)
        return found

    @property
    def policies(self) -> tuple[Policy, ...]:
        return self._store.current.policies

    def documents(self) -> list[Document]:
        """The documents of the set in force, in the store's order (each from the source that owns its name)."""
        owners = [self._documents[source] for source in sorted(self._documents)]
        found: list[Document] = []
        for policy in self._store.current.policies:
            key = policy_key(policy)
            found.append(next(docs[key] for docs in owners if key in docs))
        return found

    def digest(self, extra: Iterable[bytes] = ()) -> str:
        """A digest of the documents in force (and ``extra``), equal on every replica for equal content."""
        digest = hashlib.sha256()
        for document in sorted(
            json.dumps(d, sort_keys=True, separators=(",", ":")) for d in self.documents()
        ):
            digest.update(document.encode() + b"\n")
        for chunk in extra:
            digest.update(chunk)
        return digest.hexdigest()
