"""bench/agent.py's figures about the agent process itself: idle memory beside a floor, and import times.

The agent and its issuer are started as an operator starts them (``sigil-server run``, ``sigil-agent run``, through
bench/_stacks.py); the floor is a Python process that imports only what any Python agent of this design needs:
asyncio with ssl (TLS to the issuer), ``cryptography``'s X.509 (SVIDs and bundles), grpclib's server with protobuf
(the Workload API) and h11 (HTTP/1.1 to the issuer and for the health endpoint).

The floor imported aiohttp instead of grpclib, protobuf and h11 until the agent stopped using aiohttp (its issuer
client and health endpoint moved to h11): aiohttp is no longer something an agent of this design needs, and grpclib
with protobuf always were. Measured side by side when it changed, the old floor was 42.2 MB and the new one
32.8 MB.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from _stacks import SigilStack, rss_kib

__all__ = ["idle_rss", "import_times"]

_FLOOR = (
    "import asyncio, ssl, sys; import cryptography.x509, grpclib.server, google.protobuf.message, h11;"
    "print('ok', flush=True); sys.stdin.read()"
)


async def idle_rss() -> dict[str, float]:
    directory = Path(tempfile.mkdtemp(dir="/tmp", prefix="sgi-"))
    stack = SigilStack(directory)
    admin, _ = await stack.start()
    await admin.aclose()
    floor = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _FLOOR, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert floor.stdout is not None
        await floor.stdout.readline()
        await asyncio.sleep(3)  # past the first bundle poll: idle, serving, nothing calling
        idle, floor_kib = rss_kib(stack.agent_pid), rss_kib(floor.pid)
    finally:
        floor.kill()
        await floor.wait()
        await asyncio.to_thread(stack.stop)
    return {
        "idle_rss_mb": idle / 1024,
        "floor_rss_mb": floor_kib / 1024,
        "idle_over_floor": idle / floor_kib,
    }


def _import_seconds(module: str | None, runs: int) -> float:
    code = "import time; t = time.perf_counter()\n"
    if module is not None:
        code += f"import {module}\n"
    code += "print(time.perf_counter() - t)"
    started = []
    for _ in range(runs):
        done = subprocess.run(  # noqa: S603 -- this interpreter
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        started.append(float(done.stdout))
    return statistics.median(started)


def import_times(runs: int) -> dict[str, float]:
    whole = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        whole.append(time.perf_counter() - t)
    return {
        "interpreter_s": statistics.median(whole),
        "import_cli_s": _import_seconds("sigil.node_agent.cli", runs),
        "import_agent_s": _import_seconds("sigil.node_agent.agent", runs),
    }
