"""Policy files: a directory's YAML files found, stamped and read, each into a judged :class:`SourceResult`.

A file may hold several documents (``---``); :mod:`sigil.enforcer.policy.documents` judges each alone (Istio's
and Linkerd's are set aside in ``SourceResult.foreign`` for :mod:`.foreign` to translate), and a
file that is not YAML or cannot be read is a broken source, whose policies the store keeps. What to do with a
refusal (keep the last good version) is :mod:`sigil.enforcer.policy.store`'s business. Both the enforcer and the
issuer read their policy directories through this module, and poll them by :func:`policy_stamps`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from sigil.enforcer.errors import PolicySourceError, PolicyYamlError
from sigil.enforcer.policy.documents import AcceptedPolicy, SourceResult, broken_source, judge
from sigil.enforcer.policy.foreign import split_foreign
from sigil.enforcer.policy.schema import Where

__all__ = ["Stamp", "load_documents", "parse_file", "policy_files", "policy_stamps", "read_file"]

# The C loader when PyYAML was built with libyaml; same results, several times faster on big directories.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_SUFFIXES = (".yaml", ".yml")

Stamp = tuple[int, int, int]
"""A file's (mtime, size, inode): when any of them moves, the file must be read again."""


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


def read_file(
    path: Path, *, name: str | None = None, known: Mapping[str, AcceptedPolicy] | None = None
) -> SourceResult:
    """Read and parse one file; an unreadable file is a broken result, not an exception.

    ``known`` is :func:`~sigil.enforcer.policy.documents.judge`'s: documents accepted before are not parsed again.
    """
    file = name or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        return broken_source(file, PolicySourceError(file, reason))
    return parse_file(text, file=file, known=known)


def parse_file(
    text: str, *, file: str, known: Mapping[str, AcceptedPolicy] | None = None
) -> SourceResult:
    """Parse YAML ``text`` holding one or more policy documents (empty documents are skipped)."""
    try:
        documents = load_documents(text, file=file)
    except PolicyYamlError as err:
        return broken_source(file, err)
    several = len(documents) > 1
    try:
        own, foreign = split_foreign(
            (document, Where(file, number if several else None))
            for number, document in enumerate(documents)
        )
        judged = judge(own, source=file, known=known)
    except RecursionError:
        # An alias inside its own anchor (``a: &x [*x]``) loads as a list that holds itself, and thousands of
        # nested ``- `` load fine but cannot be walked: no policy is either (found by fuzzing).
        return broken_source(file, _too_deep(file))
    # Other meshes' documents wait for the rest of their source (the directory), to be translated together.
    return replace(judged, foreign=tuple(foreign))


def load_documents(text: str, *, file: str) -> list[Any]:
    """The non-empty YAML documents of ``text`` (the file named ``file``); PolicyYamlError when it is not YAML
    or nests too deeply to load."""
    try:
        return [d for d in yaml.load_all(text, Loader=_Loader) if d is not None]
    except yaml.YAMLError as err:
        raise _yaml_error(file, err) from err
    except RecursionError as err:
        raise _too_deep(file) from err


def _too_deep(file: str) -> PolicyYamlError:
    return PolicyYamlError(
        file, line=None, column=None, problem="nested too deeply, or an alias refers to itself"
    )


def policy_stamps(directory: Path) -> dict[str, Stamp]:
    """Each policy file's :data:`Stamp`; raises :class:`PolicySourceError` when the directory cannot be listed.

    A file removed between listing and ``stat`` is left out (it is gone); one that cannot be ``stat``-ed for
    another reason is stamped ``(-1, -1, -1)``, so it counts as changed and is read (and reported, and what it
    held stays) rather than counted as deleted.
    """
    stamps: dict[str, Stamp] = {}
    for path in policy_files(directory):
        try:
            st = os.stat(path)  # follows ConfigMap symlinks to the data they point at
        except FileNotFoundError:
            continue
        except OSError:
            stamps[str(path)] = (-1, -1, -1)
            continue
        stamps[str(path)] = (st.st_mtime_ns, st.st_size, st.st_ino)
    return stamps


def _yaml_error(file: str, err: yaml.YAMLError) -> PolicyYamlError:
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err)
    if mark is None:
        return PolicyYamlError(file, line=None, column=None, problem=problem)
    return PolicyYamlError(file, line=mark.line + 1, column=mark.column + 1, problem=problem)
