"""The reliability drills' knobs and figures: a seed and counts from the environment, figures to a file.

Each drill is repeatable: ``SIGIL_TEST_DRILL_SEED`` (default 18) seeds every random choice it makes (where to kill, how
long to wait), and ``SIGIL_TEST_DRILL_SCALE`` (default 1) multiplies its counts, for a longer run than the default few
minutes. When ``SIGIL_TEST_DRILL_FIGURES`` names a file, each drill appends one JSON line of figures to it;
``bench/reliability.py`` runs the drills that way and gathers the lines into ``bench/results/reliability.json``.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

__all__ = ["FIGURES_ENV", "SCALE_ENV", "SEED_ENV", "drill_count", "drill_rng", "record_figures"]

SEED_ENV = "SIGIL_TEST_DRILL_SEED"
SCALE_ENV = "SIGIL_TEST_DRILL_SCALE"
FIGURES_ENV = "SIGIL_TEST_DRILL_FIGURES"


def drill_rng(salt: str) -> random.Random:
    """A random source for one drill: the run's seed and the drill's name, so drills do not share a sequence."""
    seed = int(os.environ.get(SEED_ENV, "18"))
    return random.Random(f"{seed}:{salt}")  # noqa: S311 - where to kill a test server, not a secret


def drill_count(default: int) -> int:
    """``default`` times the run's scale (at least one)."""
    scale = float(os.environ.get(SCALE_ENV, "1"))
    if scale <= 0:
        raise ValueError(f"{SCALE_ENV} must be positive, not {scale}")
    return max(1, round(default * scale))


def record_figures(drill: str, **figures: Any) -> None:
    """Append ``figures`` of ``drill`` (with the seed) to the figures file, if the run names one."""
    target = os.environ.get(FIGURES_ENV)
    if not target:
        return
    line = {"drill": drill, "seed": int(os.environ.get(SEED_ENV, "18")), **figures}
    with Path(target).open("a") as out:
        out.write(json.dumps(line, sort_keys=True) + "\n")
