"""Every benchmark under ``bench/`` starts: its imports resolve from the script's own folder and ``--help`` works.

``make bench`` runs them as scripts, with ``bench/`` first on ``sys.path``, so a script whose name shadows a
package (a ``bench/envoy.py`` hid xds-protos' ``envoy`` from every benchmark that imports the agent) or a module
moved from under a benchmark breaks them without any test noticing. The figures themselves are never asserted
here (they are the benchmarks' to print).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
SCRIPTS = sorted(p.name for p in BENCH.glob("[!_]*.py"))


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_benchmark_starts_and_takes_quick(script: str) -> None:
    """``python bench/NAME.py --help`` exits 0 and offers ``--quick``, as ``make bench-quick`` needs."""
    result = subprocess.run(  # noqa: S603 - this interpreter on our own scripts
        [sys.executable, str(BENCH / script), "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--quick" in result.stdout
