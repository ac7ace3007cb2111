"""The reliability figures: the drills of ``tests/reliability/`` run with a count, and a restart baseline.

1. **The drills**, run by pytest in a child process with ``SIGIL_TEST_DRILL_SEED``, ``SIGIL_TEST_DRILL_SCALE`` and
   ``SIGIL_TEST_DRILL_FIGURES`` set: each drill appends its figures to that file (``sigil_testing.drill_figures``),
   and a drill that fails contributes its failure instead (``drills_failed``). Figures: kills survived / tried
   (``sigil-server run`` killed with SIGKILL mid-rotation and mid-batch, SQLite, PostgreSQL, one replica of two),
   database restarts survived (with the answers while it was down and the seconds until both replicas served again),
   outage minutes with zero expired SVIDs served, and the full-disk drill.
2. **Restart after a kill against a clean restart** (the baseline, same run): ``sigil-server run`` on SQLite
   stopped with SIGTERM and started again, then killed with SIGKILL and started again, each a few times; the figure
   is the ratio of the median times until the admin API says ready (a crash costs no recovery work at start).
3. **The merge point with the fuzzing and soak helpers**: ``fuzz`` and ``soak`` are read from
   ``bench/results/fuzz.json`` and ``bench/results/soak.json`` when those files exist (written by their own
   scripts: executions and crashes per fuzz target; soak errors and memory slope), copied as they are under those
   keys, and ``null`` otherwise; the README's reliability table has a row for each.

    python bench/reliability.py                 # every drill at its default count (a few minutes), 5 restarts each
    python bench/reliability.py --scale 4       # four times the kills and restarts
    python bench/reliability.py --quick         # the SQLite crash drill at a tenth, the outage and disk drills
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _results import RESULTS, merge_results  # bench/ is the script's own directory

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from sigil_testing.paths import short_directory  # noqa: E402 - after the tests folder is on the path
from sigil_testing.server_process import ServerProcess  # noqa: E402

_QUICK_DRILLS = "crash_sqlite or outage or disk"


def run_drills(*, seed: int, scale: float, quick: bool) -> dict[str, Any]:
    """Run ``tests/reliability`` in a child pytest; returns each drill's figures and the failures."""
    with tempfile.TemporaryDirectory(prefix="sigil-drills-") as scratch:
        figures_file = Path(scratch) / "figures.jsonl"
        env = {
            **os.environ,
            "SIGIL_TEST_DRILL_SEED": str(seed),
            "SIGIL_TEST_DRILL_SCALE": str(scale),
            "SIGIL_TEST_DRILL_FIGURES": str(figures_file),
        }
        argv = [sys.executable, "-m", "pytest", "tests/reliability", "-q", "-p", "no:cacheprovider"]
        if quick:
            argv += ["-k", _QUICK_DRILLS.replace("crash_sqlite", "sqlite")]
        started = time.monotonic()
        done = subprocess.run(  # noqa: S603 - this interpreter on our own tests
            argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False
        )
        lines = figures_file.read_text().splitlines() if figures_file.exists() else []
    drills = {line["drill"]: line for line in map(json.loads, lines)}
    failed = [
        line.split(" ", 1)[1] for line in done.stdout.splitlines() if line.startswith("FAILED ")
    ]
    if done.returncode != 0:
        # What pytest said, for the person reading: a failed drill is a finding, not a figure.
        print("\n".join(done.stdout.splitlines()[-60:]), file=sys.stderr)
    return {"drills": drills, "failed": failed, "seconds": round(time.monotonic() - started, 1)}


async def restart_baseline(rounds: int) -> dict[str, float]:
    """Median seconds until ready after a clean restart (SIGTERM) and after a SIGKILL, on one SQLite server."""
    clean: list[float] = []
    killed: list[float] = []
    with (
        tempfile.TemporaryDirectory(prefix="sigil-restart-") as scratch,
        short_directory() as sockets,
    ):
        server = ServerProcess(Path(scratch) / "server", sockets)
        await server.start()
        try:
            for _ in range(rounds):
                for stop, times in ((server.stop, clean), (server.kill, killed)):
                    await stop()
                    started = time.monotonic()
                    await server.start()
                    times.append(time.monotonic() - started)
        finally:
            await server.stop()
    return {
        "clean_restart_s": round(statistics.median(clean), 3),
        "restart_after_kill_s": round(statistics.median(killed), 3),
        "restart_after_kill_over_clean_restart": round(
            statistics.median(killed) / statistics.median(clean), 3
        ),
    }


def _merged(path: Path) -> Any:
    """What another helper's benchmark wrote, or None when it has not run here."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def summarise(drills: dict[str, Any]) -> dict[str, Any]:
    """The table's rows from the drills' figures (a drill that did not run counts zero)."""
    crash = [drills.get(name, {}) for name in ("crash_sqlite", "crash_postgres", "crash_replicas")]
    restarts = drills.get("database_restart", {})
    outage = drills.get("issuer_outage", {})
    return {
        "kills_tried": sum(d.get("kills_tried", 0) for d in crash),
        "kills_survived": sum(d.get("kills_survived", 0) for d in crash),
        "database_restarts_tried": restarts.get("restarts_tried", 0),
        "database_restarts_survived": restarts.get("restarts_survived", 0),
        "agent_restarts_during_outage_survived": drills.get("agent_restart_during_outage", {}).get(
            "restarts_survived", 0
        ),
        "outage_minutes_zero_expired_svids": outage.get("outage_minutes", 0)
        if outage.get("expired_svids_served") == 0
        else 0,
        "full_disk_recovered": bool(drills.get("disk_full", {}).get("recovered")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--quick", action="store_true", help="a subset of the drills, under a minute"
    )
    parser.add_argument("--seed", type=int, default=18, help="the drills' seed (default 18)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies the drills' counts")
    args = parser.parse_args()
    scale = 0.1 if args.quick else args.scale
    drilled = run_drills(seed=args.seed, scale=scale, quick=args.quick)
    baseline = asyncio.run(restart_baseline(2 if args.quick else 5))
    figures: dict[str, Any] = {
        "seed": args.seed,
        "scale": scale,
        "quick": args.quick,
        **summarise(drilled["drills"]),
        "drills_failed": drilled["failed"],
        "drill_seconds": drilled["seconds"],
        "drills": drilled["drills"],
        **baseline,
        # The merge point: the fuzz and soak helpers' own results, when their scripts have run here.
        "fuzz": _merged(RESULTS / "fuzz.json"),
        "soak": _merged(RESULTS / "soak.json"),
    }
    for key in (
        "kills_survived",
        "kills_tried",
        "database_restarts_survived",
        "outage_minutes_zero_expired_svids",
        "full_disk_recovered",
        "restart_after_kill_over_clean_restart",
        "drills_failed",
    ):
        print(f"{key:40} {figures[key]}")
    merge_results(RESULTS / "reliability.json", figures)
    if drilled["failed"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
