"""Reading policy files: YAML text in, policies and precise errors out, one document at a time.

A file may hold several documents (``---``). Each document is judged alone, so one bad policy never takes
down the others; a refusal names the file, the document, the field path and what was expected. What to do
with a refusal (keep the last good version) is :mod:`sigil.enforcer.policy.store`'s business; this module
only tells it which policy a broken document *meant* to be, when that can be read.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from sigil.enforcer.errors import EnforcerError, PolicyError, PolicySourceError, PolicyYamlError
from sigil.enforcer.policy.model import AuthorizationPolicy, Policy, parse_policy
from sigil.enforcer.policy.resources import KINDS
from sigil.enforcer.policy.schema import Where

__all__ = ["FileResult", "PolicyKey", "parse_file", "policy_files", "policy_key", "read_file"]

# The C loader when PyYAML was built with libyaml; same results, several times faster on big directories.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_SUFFIXES = (".yaml", ".yml")

PolicyKey = tuple[str, str, str]
"""A policy's identity: (kind, namespace or "", name)."""


def policy_key(policy: Policy) -> PolicyKey:
    """The identity of ``policy``: two documents with the same key describe the same policy."""
    if isinstance(policy, AuthorizationPolicy):
        return (policy.kind, policy.namespace, policy.name)
    return (policy.kind, "", policy.name)


@dataclass(frozen=True, slots=True)
class FileResult:
    """What one file yielded.

    ``broken`` means the file as a whole cannot be trusted (not YAML, unreadable, or a refused document whose
    identity cannot be read), so the store keeps everything the file last held. Otherwise ``refused`` names the
    policies whose new version was refused, so the store keeps their last good version.
    """

    file: str
    policies: tuple[Policy, ...] = ()
    errors: tuple[EnforcerError, ...] = ()
    refused: frozenset[PolicyKey] = frozenset()
    broken: bool = False


def policy_files(directory: Path) -> list[Path]:
    """The ``*.yaml``/``*.yml`` files of ``directory``, sorted; raises :class:`PolicySourceError`.

    Hidden entries are skipped: a ConfigMap volume keeps its real files under ``..data`` and links them
    from the top level, so reading both would load every policy twice.
    """
    try:
        entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
    except OSError as err:
        raise PolicySourceError(str(directory), err.strerror or str(err)) from err
    return [
        Path(entry.path)
        for entry in entries
        if not entry.name.startswith(".") and entry.name.endswith(_SUFFIXES) and entry.is_file()
    ]


def read_file(path: Path, *, name: str | None = None) -> FileResult:
    """Read and parse one file; an unreadable file is a broken result, not an exception."""
    file = name or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        return FileResult(file, errors=(PolicySourceError(file, reason),), broken=True)
    return parse_file(text, file=file)


def parse_file(text: str, *, file: str) -> FileResult:
    """Parse YAML ``text`` holding one or more policy documents (empty documents are skipped)."""
    try:
        documents = list(yaml.load_all(text, Loader=_Loader))
    except yaml.YAMLError as err:
        return FileResult(file, errors=(_yaml_error(file, err),), broken=True)
    documents = [document for document in documents if document is not None]
    several = len(documents) > 1
    policies: list[Policy] = []
    errors: list[EnforcerError] = []
    refused: set[PolicyKey] = set()
    broken = False
    for number, document in enumerate(documents):
        where = Where(file, number if several else None)
        try:
            policies.append(parse_policy(document, where=where))
        except PolicyError as err:
            errors.append(err)
            key = _raw_key(document)
            if key is None:
                broken = True
            else:
                refused.add(key)
    return FileResult(file, tuple(policies), tuple(errors), frozenset(refused), broken)


def _raw_key(document: object) -> PolicyKey | None:
    """Which policy a refused document meant to be, if its kind and names can still be read."""
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


def _yaml_error(file: str, err: yaml.YAMLError) -> PolicyYamlError:
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err)
    if mark is None:
        return PolicyYamlError(file, line=None, column=None, problem=problem)
    return PolicyYamlError(file, line=mark.line + 1, column=mark.column + 1, problem=problem)
