"""How hard the fuzz tests try, in one place: a Hypothesis ``settings`` every fuzz test wears.

``SIGIL_FUZZ_EXAMPLES`` raises the number of inputs per target (``bench/fuzz.py`` and a long run before a
release); the default keeps ``make test`` within its budget. No deadline: a slow input on a loaded machine is not
a bug, a hang is, and the per-test timeout catches that. Hypothesis keeps no example database in the tree (the
corpora that found bugs are kept as explicit examples and files under ``tests/fuzz/corpus/``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from hypothesis import HealthCheck, settings

__all__ = ["CORPUS", "FUZZ", "corpus", "outcome"]

_T = TypeVar("_T")
_E = TypeVar("_E", bound=Exception)

CORPUS = Path(__file__).parent / "corpus"

FUZZ = settings(
    max_examples=int(os.environ.get("SIGIL_FUZZ_EXAMPLES", "150")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def corpus(target: str) -> list[bytes]:
    """The inputs kept under ``corpus/TARGET/`` (each one found a bug once), in file name order."""
    directory = CORPUS / target
    return [path.read_bytes() for path in sorted(directory.iterdir())] if directory.is_dir() else []


def outcome(call: Callable[[], _T], refusal: type[_E]) -> _T | _E:
    """What ``call`` returned, or the ``refusal`` it raised; any other exception is the bug a fuzz test looks for."""
    try:
        return call()
    except refusal as err:
        return err
