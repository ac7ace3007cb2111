"""Policies coming in to the issuer: the last good policies of every source, and the directory it polls.

The enforcer's :class:`~sigil.enforcer.policy.store.PolicyStore` decides what is in force (last good version per
source, a refused document never removes what was in force, a duplicate name loses to the source that sorts
first), and it keeps each accepted policy's canonical document, which is what agents are sent: they judge it
again with the same schema on their side. Every document is judged by :mod:`sigil.enforcer.policy.documents`,
once: what a source sends again unchanged keeps the policy parsed the first time.

Sources are named so they sort in a fixed order: a directory's files by absolute path (``/...``), then
``admin``, then ``kubernetes:...``; on a name clash the file wins, as the store's rule says. The directory is
polled by a cheap ``stat`` of each file (no inotify dependency, and it works on ConfigMap volumes, whose atomic
symlink swap inotify watchers famously miss); only the files that moved are read again. Istio's and Linkerd's
documents among the files are translated together (:mod:`sigil.enforcer.policy.foreign`) whenever one of them
moves, as the source :func:`~sigil.enforcer.policy.store.translated_source` names.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from sigil.enforcer.policy.dialects.base import SourcedDocument, TranslateOptions
from sigil.enforcer.policy.documents import AcceptedPolicy, PolicyKey, SourceResult, judge
from sigil.enforcer.policy.foreign import judge_foreign
from sigil.enforcer.policy.loader import Stamp, policy_stamps, read_file
from sigil.enforcer.policy.model import Policy
from sigil.enforcer.policy.origin import KeptByPolicy, Origin, OriginKind, policy_revision
from sigil.enforcer.policy.schema import Where
from sigil.enforcer.policy.store import LoadReport, PolicyStore, translated_source

__all__ = ["PolicySources"]


class PolicySources:
    """Every source's policies in one store, and the policy directory's files; used on the event loop."""

    def __init__(
        self, directory: Path | None, *, translation: TranslateOptions | None = None
    ) -> None:
        self._directory = directory
        self._translation = translation or TranslateOptions()
        self._store = PolicyStore()
        self._stamps: dict[str, Stamp] = {}
        # Each file's Istio and Linkerd documents, translated together whenever one of them moves.
        self._foreign: dict[str, tuple[SourcedDocument, ...]] = {}
        self._broken: set[str] = set()
        # Where each source's policies came from; kept like the store keeps their last good versions.
        self._origins: dict[str, dict[PolicyKey, Origin]] = {}
        # Each policy's origin with its revision filled in, from the last call of origins(), by the policy object
        # (kept across revisions while its document is unchanged): a change moves one policy of a thousand, and
        # hashing each origin again cost as much as filling it in.
        self._revised: KeptByPolicy[Origin] = KeptByPolicy()

    @property
    def in_force(self) -> tuple[AcceptedPolicy, ...]:
        """The policies in force with their canonical documents, in the store's order."""
        return self._store.current.accepted

    def policies(self) -> tuple[Policy, ...]:
        """The policies in force, in the store's order."""
        return self._store.current.policies

    def owners(self) -> dict[PolicyKey, str]:
        """Which source each policy in force came from (a refused resource's last good version included)."""
        return self._store.owners()

    def judge(
        self,
        documents: Iterable[tuple[object, Where]],
        *,
        source: str,
        also: Iterable[AcceptedPolicy] = (),
    ) -> SourceResult:
        """Judge one source's documents, reusing what is held (and ``also``, judged moments ago) unparsed."""
        known = self._store.known()
        known.update((accepted.canonical, accepted) for accepted in also)
        return judge(documents, source=source, known=known)

    def apply(
        self, result: SourceResult, *, origins: Sequence[Origin | None] | None = None
    ) -> LoadReport:
        """Take in one source's new content; the store's merge rule decides what stays.

        ``origins`` says where each document came from, in the order of ``result.outcomes``; without it a
        file's documents are numbered in it and every other source is the admin API.
        """
        self._remember_origins(result, origins)
        return self._store.apply(result)

    def origins(self) -> dict[PolicyKey, Origin]:
        """Each policy in force's origin, its own revision included."""
        owners = self._store.owners()
        found: dict[PolicyKey, Origin] = {}
        self._revised.begin()
        for accepted in self.in_force:
            key = accepted.key
            origin = self._origins.get(owners.get(key, ""), {}).get(key)
            if origin is None:
                continue
            found[key] = self._revised.get(accepted, origin, _with_revision)
        return found

    def _remember_origins(
        self, result: SourceResult, origins: Sequence[Origin | None] | None
    ) -> None:
        old = self._origins.get(result.source, {})
        if result.broken:
            return  # the store keeps everything the source held, and so do we
        fresh: dict[PolicyKey, Origin] = {}
        several = len(result.outcomes) > 1
        for number, outcome in enumerate(result.outcomes):
            if isinstance(outcome, AcceptedPolicy):
                given = None if origins is None else origins[number]
                fresh[outcome.key] = given or _default_origin(result.source, number, several)
        for key in result.refused:
            if key in old and key not in fresh:
                fresh[key] = old[key]
        self._origins[result.source] = fresh

    async def scan_directory(self) -> list[LoadReport]:
        """Read again the files that moved since the last scan (in worker threads); [] when none did.

        Raises :class:`~sigil.enforcer.errors.PolicySourceError`, changing nothing, when the directory itself
        cannot be listed: a vanished mount must not read as "every policy was deleted".
        """
        if self._directory is None:
            return []
        stamps = await asyncio.to_thread(policy_stamps, self._directory)
        if stamps == self._stamps:
            return []
        reports = [self._store.remove(gone) for gone in sorted(set(self._stamps) - set(stamps))]
        foreign_moved = False
        for gone in set(self._stamps) - set(stamps):
            self._origins.pop(gone, None)
            foreign_moved = bool(self._foreign.pop(gone, ())) or foreign_moved
            self._broken.discard(gone)
        known = self._store.known()  # once per scan: a big directory must not cost files x policies
        for path, stamp in sorted(stamps.items()):
            if self._stamps.get(path) != stamp:
                result = await asyncio.to_thread(read_file, Path(path), known=known)
                reports.append(self.apply(result))
                if result.broken:
                    self._broken.add(path)
                else:
                    self._broken.discard(path)
                    foreign_moved = foreign_moved or self._foreign.get(path, ()) != result.foreign
                    self._foreign[path] = result.foreign
        self._stamps = stamps
        if foreign_moved:
            reports.append(await asyncio.to_thread(self._translate, known))
        return reports

    def _translate(self, known: Mapping[str, AcceptedPolicy]) -> LoadReport:
        """Translate the directory's Istio and Linkerd documents together, as one more source."""
        assert self._directory is not None  # noqa: S101 -- only scan_directory calls this, with a directory
        documents = [document for path in sorted(self._foreign) for document in self._foreign[path]]
        result = judge_foreign(
            documents,
            source=translated_source(self._directory),
            options=self._translation,
            known=known,
        )
        report = self.apply(result)
        return replace(report, findings=result.findings)

    def documents(self) -> list[dict[str, Any]]:
        """The documents of the set in force, in the store's order (each from the source that owns its name)."""
        return [dict(accepted.document) for accepted in self.in_force]

    def listing(self) -> list[dict[str, Any]]:
        """The policies in force with the source each came from (``sigil-server policy list``)."""
        owners = self.owners()
        return [
            {
                "kind": accepted.policy.kind,
                "namespace": accepted.key[1],
                "name": accepted.policy.name,
                "source": owners.get(accepted.key, ""),
                "dry_run": accepted.policy.dry_run,
            }
            for accepted in self.in_force
        ]


def _default_origin(source: str, number: int, several: bool) -> Origin:
    # Files are named by their absolute path; the admin table is the other source without its own origins.
    if source.startswith("/"):
        return Origin(kind=OriginKind.FILE, name=source, document=number if several else None)
    return Origin(kind=OriginKind.ADMIN, name="admin")


def _with_revision(accepted: AcceptedPolicy, origin: Origin) -> Origin:
    return replace(origin, revision=policy_revision(accepted.canonical))
