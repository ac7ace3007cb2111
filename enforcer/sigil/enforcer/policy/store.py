"""The policies in force: the last good version of each policy, numbered by revision.

Linkerd and Istio users have watched a typo in one policy file take down authorization for a whole
namespace; Sigil's rule is that a refused document never removes what was in force. The store remembers, per
source file, the last good version of every policy it held. A refused document keeps its policy's last good
version; a file that cannot be read at all keeps everything it last held. Every change to the effective set
gets the next revision number, which enforcers report in their metrics.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from sigil.ca.spiffe_id import TrustDomain
from sigil.enforcer.errors import EnforcerError, PolicyError
from sigil.enforcer.policy.defaults import DefaultPolicy
from sigil.enforcer.policy.dialects.base import Finding, SourcedDocument, TranslateOptions
from sigil.enforcer.policy.documents import AcceptedPolicy, PolicyKey, SourceResult
from sigil.enforcer.policy.foreign import judge_foreign
from sigil.enforcer.policy.index import PolicyIndex
from sigil.enforcer.policy.loader import policy_files, read_file
from sigil.enforcer.policy.model import Policy
from sigil.enforcer.policy.peer_ids import WorkloadIdPattern

__all__ = ["LoadReport", "PolicySet", "PolicyStore", "translated_source"]


def translated_source(directory: Path) -> str:
    """The source name of a directory's translated Istio and Linkerd documents."""
    return f"{directory}{os.sep}(translated)"


@dataclass(frozen=True, slots=True)
class PolicySet:
    """An immutable snapshot of the policies in force at ``revision`` (0: nothing loaded yet), with documents."""

    revision: int
    accepted: tuple[AcceptedPolicy, ...] = ()

    @property
    def policies(self) -> tuple[Policy, ...]:
        """The policies in force, in the store's order (source name, then kind, namespace, name)."""
        return tuple(accepted.policy for accepted in self.accepted)

    def compile(
        self,
        *,
        trust_domain: TrustDomain,
        default_allow: bool = True,
        default: DefaultPolicy | None = None,
        namespaces: Mapping[str, Mapping[str, str]] | None = None,
        workload_ids: WorkloadIdPattern | None = None,
    ) -> PolicyIndex:
        """The index that decides against this snapshot (``default`` overrides ``default_allow``)."""
        return PolicyIndex(
            self.policies,
            trust_domain=trust_domain,
            default_allow=default_allow,
            default=default,
            namespaces=namespaces,
            workload_ids=workload_ids,
        )


@dataclass(frozen=True, slots=True)
class LoadReport:
    """The outcome of one load: the revision now in force, whether it changed, and every refusal."""

    revision: int
    changed: bool
    errors: tuple[EnforcerError, ...] = ()
    findings: tuple[Finding, ...] = ()

    @property
    def ok(self) -> bool:
        """True when nothing was refused."""
        return not self.errors


class PolicyStore:
    """Last good policies per source, adding up to the revisioned :class:`PolicySet` in force."""

    def __init__(self) -> None:
        self._files: dict[str, dict[PolicyKey, AcceptedPolicy]] = {}
        self._owners: dict[PolicyKey, str] = {}
        self._current = PolicySet(0)

    @property
    def current(self) -> PolicySet:
        """The snapshot in force."""
        return self._current

    def owners(self) -> dict[PolicyKey, str]:
        """Which source each policy in force came from (the first, in name order, holding its name)."""
        return dict(self._owners)

    def known(self) -> dict[str, AcceptedPolicy]:
        """Every policy held, by canonical document: what :func:`~sigil.enforcer.policy.documents.judge` need not
        parse again."""
        return {
            accepted.canonical: accepted
            for held in self._files.values()
            for accepted in held.values()
        }

    def apply(self, result: SourceResult) -> LoadReport:
        """Take in one source's new content (from a file, the admin API, a CRD watch)."""
        self._merge(result)
        return self._commit(result.errors)

    def remove(self, file: str) -> LoadReport:
        """Forget a source that was deleted: its policies leave the set."""
        self._files.pop(file, None)
        return self._commit(())

    def load_directory(
        self, directory: Path, *, options: TranslateOptions | None = None
    ) -> LoadReport:
        """Make the set match ``directory``'s files, keeping last good versions of whatever is refused.

        Istio's and Linkerd's documents among them are translated together, under ``options``, as one more
        source (:func:`translated_source`); while a file cannot be read, that source keeps what it held.
        Raises :class:`~sigil.enforcer.errors.PolicySourceError`, changing nothing, when the directory itself
        cannot be listed: a vanished mount must not read as "every policy was deleted".
        """
        paths = policy_files(directory)
        translated = translated_source(directory)
        present = {str(path) for path in paths} | {translated}
        for gone in [file for file in self._files if file not in present]:
            del self._files[gone]
        errors: list[EnforcerError] = []
        foreign: list[SourcedDocument] = []
        broken = False
        known = self.known()  # once per load: a big directory must not cost files x policies
        for path in paths:
            result = read_file(path, known=known)
            self._merge(result)
            errors.extend(result.errors)
            foreign.extend(result.foreign)
            broken = broken or result.broken
        findings: tuple[Finding, ...] = ()
        if foreign or translated in self._files:
            result = judge_foreign(
                foreign, source=translated, options=options or TranslateOptions(), known=known
            )
            if broken:
                result = replace(result, broken=True)
            self._merge(result)
            errors.extend(result.errors)
            findings = result.findings
        return replace(self._commit(errors), findings=findings)

    def _merge(self, result: SourceResult) -> None:
        old = self._files.get(result.source)
        if result.broken and old is not None:
            return  # keep everything the source last held
        fresh = {accepted.key: accepted for accepted in result.accepted}
        for key in result.refused:
            if old is not None and key in old and key not in fresh:
                fresh[key] = old[key]
        self._files[result.source] = fresh

    def _commit(self, errors: Iterable[EnforcerError]) -> LoadReport:
        refusals = list(errors)
        owner: dict[PolicyKey, str] = {}
        in_force: list[AcceptedPolicy] = []
        for file in sorted(self._files):
            for key, accepted in sorted(self._files[file].items(), key=lambda item: item[0]):
                if key in owner:
                    # The first file (in name order) keeps the name, so a copy never displaces the original.
                    ref = accepted.policy.ref
                    expected = f"a name not taken ({key[0]} {ref} is also in {owner[key]})"
                    refusals.append(PolicyError(file, "metadata.name", expected, found=key[2]))
                    continue
                owner[key] = file
                in_force.append(accepted)
        self._owners = owner
        snapshot = tuple(in_force)
        changed = tuple(a.policy for a in snapshot) != self._current.policies
        if changed:
            self._current = PolicySet(self._current.revision + 1, snapshot)
        elif snapshot != self._current.accepted:
            # Only documents changed (a label, an annotation): what is enforced, and so its number, stays.
            self._current = PolicySet(self._current.revision, snapshot)
        return LoadReport(self._current.revision, changed, tuple(refusals))
