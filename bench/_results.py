"""Where the benchmarks keep their figures: one JSON file per benchmark, merged so that several may share one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def merge_results(path: Path, figures: dict[str, Any]) -> None:
    """Update ``path`` with ``figures``, keeping every key other benchmarks wrote."""
    results: dict[str, Any] = {}
    if path.exists():
        results = json.loads(path.read_text(encoding="utf-8"))
    results.update(figures)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")
