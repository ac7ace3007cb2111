"""The issuer's idle resident memory, and what its imports cost, against a bare Python process in the same run.

Starts ``sigil-server run`` (SQLite, no Kubernetes; then again with ``--signing-workers 2``), waits until it serves
and has been idle a moment, and reads its resident set from ``/proc``. Then, in fresh interpreters, imports the
issuer's dependencies one after another and records what each adds (resident kB, modules, seconds), so the total is
attributed to the packages that cost it. ``ratio`` is the idle issuer over a bare interpreter. Writes
``bench/results/memory.json``.

    python bench/memory.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _results import RESULTS, merge_results  # bench/ is the script's own directory

#: In the order the issuer's own import pulls them in, so that each line is what that package adds on top.
_PACKAGES = [
    "cryptography.x509",
    # structlog imports rich (and pygments) whenever it is installed; here it comes with import-linter, a development
    # tool, so an image without the test extras does not carry it. Measured apart for that reason.
    "rich.traceback",
    "structlog",
    "yaml",
    "sqlalchemy.ext.asyncio",
    "aiosqlite",
    # Alembic runs once, at start, to migrate; the server keeps it loaded afterwards.
    "alembic.command",
    "aiohttp.web",
    "prometheus_client",
    "jwt",
    # Loaded only when the server talks to Kubernetes (``server.kubernetes``); the idle figure above is without it.
    "kubernetes.client",
    "sigil.issuer.cli",
]

_STEPS = r"""
import importlib, json, sys, time
def rss():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0
rows, last, modules = [], rss(), len(sys.modules)
for name in sys.argv[1:]:
    started = time.perf_counter()
    try:
        importlib.import_module(name)
    except ImportError:
        continue
    now = rss()
    rows.append({"package": name, "kb": now - last, "modules": len(sys.modules) - modules,
                 "seconds": round(time.perf_counter() - started, 3)})
    last, modules = now, len(sys.modules)
print(json.dumps({"rows": rows, "total_kb": last}))
"""


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _idle_issuer(workers: int, settle: float) -> dict[str, float]:
    """Resident MB of an idle ``sigil-server run`` (and of its signing workers), once it listens."""
    with tempfile.TemporaryDirectory(prefix="sgm") as tmp:
        port = _free_port()
        argv = [
            sys.executable,
            "-m",
            "sigil.issuer.cli",
            "--data-dir",
            tmp,
            "--listen",
            f"127.0.0.1:{port}",
            "run",
            "--signing-workers",
            str(workers),
        ]
        env = {**os.environ, "SIGIL_LOG_LEVEL": "warning"}
        server = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # noqa: S603
        try:
            deadline = time.monotonic() + 60
            while True:
                if server.poll() is not None:
                    raise RuntimeError(
                        f"sigil-server exited: {server.stderr.read().decode()[-500:]}"
                    )  # type: ignore[union-attr]
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError("sigil-server did not listen within 60 s") from None
                    time.sleep(0.2)
            time.sleep(settle)
            main = _rss_kb(server.pid)
            workers_kb = [_rss_kb(child) for child in _children(server.pid)]
        finally:
            server.terminate()
            server.wait(timeout=30)
    return {"main_mb": main / 1024, "workers_mb": sum(workers_kb) / 1024}


def _bare_python_mb() -> float:
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.5)
        return _rss_kb(idle.pid) / 1024
    finally:
        idle.kill()
        idle.wait()


def _imports() -> dict[str, Any]:
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-c", _STEPS, *_PACKAGES], capture_output=True, text=True, check=True
    )
    return dict(json.loads(done.stdout))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a run of well under a minute")
    args = parser.parse_args()
    settle = 2.0 if args.quick else 10.0
    bare = _bare_python_mb()
    one = _idle_issuer(1, settle)
    two = _idle_issuer(2, settle)
    imports = _imports()
    figures: dict[str, Any] = {
        "python_baseline_mb": round(bare, 1),
        "issuer_idle_mb": round(one["main_mb"], 1),
        "ratio": round(one["main_mb"] / bare, 2),
        "issuer_idle_2_workers_main_mb": round(two["main_mb"], 1),
        "issuer_idle_2_workers_workers_mb": round(two["workers_mb"], 1),
        "imports": {
            row["package"]: {
                "mb": round(row["kb"] / 1024, 1),
                "modules": row["modules"],
                "seconds": row["seconds"],
            }
            for row in imports["rows"]
        },
        "imports_total_mb": round(imports["total_kb"] / 1024, 1),
        "quick": args.quick,
    }
    merge_results(RESULTS / "memory.json", figures)
    for key, value in figures.items():
        if key != "imports":
            print(f"{key:>34}: {value}")
    for name, row in figures["imports"].items():
        print(f"{name:>34}: +{row['mb']} MB, +{row['modules']} modules, {row['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
