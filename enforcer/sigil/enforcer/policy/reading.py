"""Policy sets named on a command line: files and directories of any dialect mix, read once with their origins.

``check``, ``effective`` and ``diff`` read policies the way the enforcer does (:mod:`.loader`, judged by
:mod:`.documents`, names settled by :class:`~sigil.enforcer.policy.store.PolicyStore`), but from any number of
files and directories, and they must say where each policy lives. Istio's and Linkerd's documents among them
are gathered from every path and translated in one batch (:mod:`.foreign`); each translated policy's origin
names the objects it came from. Every refusal is collected, never skipped: a view or a verdict that silently
left a policy out would be wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sigil.enforcer.errors import PolicySourceError
from sigil.enforcer.policy.dialects.base import (
    TRANSLATED_FROM,
    Finding,
    SourcedDocument,
    TranslateOptions,
)
from sigil.enforcer.policy.documents import AcceptedPolicy, PolicyKey, SourceResult
from sigil.enforcer.policy.foreign import judge_foreign
from sigil.enforcer.policy.loader import policy_files, read_file
from sigil.enforcer.policy.origin import Origin, OriginKind, policy_revision
from sigil.enforcer.policy.store import PolicySet, PolicyStore

__all__ = ["ReadPolicies", "read_policies"]

_TRANSLATED = "(translated)"


@dataclass(frozen=True, slots=True)
class ReadPolicies:
    """What :func:`read_policies` found: the set, each policy's origin, every refusal, every finding."""

    policies: PolicySet
    origins: dict[PolicyKey, Origin]
    errors: tuple[str, ...]
    findings: tuple[Finding, ...]


def read_policies(paths: Sequence[Path], *, options: TranslateOptions) -> ReadPolicies:
    """Read ``paths`` (policy files, or directories of them) as one set; raises :class:`PolicySourceError`
    for a path that is neither."""
    store = PolicyStore()
    origins: dict[PolicyKey, Origin] = {}
    errors: list[str] = []
    foreign: list[SourcedDocument] = []
    for path in _files(paths):
        result = read_file(path)
        errors.extend(str(error) for error in store.apply(result).errors)
        foreign.extend(result.foreign)
        _remember(origins, result, str(path))
    findings: tuple[Finding, ...] = ()
    if foreign:
        result = judge_foreign(foreign, source=_TRANSLATED, options=options)
        errors.extend(str(error) for error in store.apply(result).errors)
        findings = result.findings
        for outcome in result.outcomes:
            if isinstance(outcome, AcceptedPolicy):
                origins.setdefault(outcome.key, _origin(outcome, _translated_from(outcome), None))
    return ReadPolicies(store.current, origins, tuple(dict.fromkeys(errors)), findings)


def _files(paths: Sequence[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(policy_files(path))
        elif path.is_file():
            files.append(path)
        else:
            raise PolicySourceError(str(path), "no such file or directory")
    return files


def _remember(origins: dict[PolicyKey, Origin], result: SourceResult, file: str) -> None:
    several = len(result.outcomes) > 1
    for number, outcome in enumerate(result.outcomes):
        if isinstance(outcome, AcceptedPolicy):
            # Beside foreign documents a Sigil document's number among the outcomes is not its number in the
            # file: no number rather than a wrong one.
            document = number if several and not result.foreign else None
            origins.setdefault(outcome.key, _origin(outcome, file, document))


def _origin(accepted: AcceptedPolicy, name: str, document: int | None) -> Origin:
    return Origin(
        kind=OriginKind.FILE,
        name=name,
        document=document,
        revision=policy_revision(accepted.canonical),
    )


def _translated_from(accepted: AcceptedPolicy) -> str:
    annotations = accepted.document.get("metadata", {}).get("annotations") or {}
    found = annotations.get(TRANSLATED_FROM)
    return f"translated from {found}" if isinstance(found, str) else "translated"
