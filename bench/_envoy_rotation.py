"""Time from a forced rotation to a real Envoy presenting the new certificate, through the agent's SDS.

Why: Envoy holds its certificate only from SDS; the figure says how long a rotated (or, after a compromise, replaced)
SVID takes to reach new connections. A rotation is forced as an operator forces one (the X.509 authority replaced,
the old one tainted). The baseline, measured in the same run, is a SPIFFE-aware workload: from the forced rotation
to the Workload API serving the new SVID (the taint reaching the agent, the issuer's round trip). Envoy is polled
after that, so its figure is at least the baseline's; the difference is the SDS push and Envoy's reload. ``bench/through_envoy.py`` calls :func:`measure_rotation`; run alone it prints the figures:

    .venv/bin/python bench/_envoy_rotation.py [--rotations N] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from sigil_testing.envoy_mesh import EnvoyMesh, envoy_mesh
from spiffe import WorkloadApiClient

__all__ = ["measure_rotation"]


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def _serial(client: WorkloadApiClient) -> int:
    """The serial of the SVID the Workload API serves now (blocking: py-spiffe is a grpcio client)."""
    return int(client.fetch_x509_svid().leaf.serial_number)


async def _measure(
    mesh: EnvoyMesh, client: WorkloadApiClient, rotations: int
) -> tuple[list[float], list[float]]:
    agent_ms: list[float] = []
    envoy_ms: list[float] = []
    for _ in range(rotations):
        before = (await mesh.presented()).serial_number
        started = time.perf_counter()
        await mesh.force_rotation()
        while await asyncio.to_thread(_serial, client) == before:
            pass
        agent_ms.append((time.perf_counter() - started) * 1000)
        # Each request is a new connection from the caller's Envoy: the first new serial ends the wait.
        while (await mesh.presented()).serial_number == before:
            pass
        envoy_ms.append((time.perf_counter() - started) * 1000)
    return agent_ms, envoy_ms


async def measure_rotation(rotations: int = 20) -> dict[str, float]:
    """Force ``rotations`` rotations; p50/p99 (ms) until the Workload API serves the SVID and Envoy presents it."""
    with tempfile.TemporaryDirectory(prefix="sg-bench-") as directory:
        async with envoy_mesh(Path(directory)) as mesh:
            client = WorkloadApiClient(socket_path=mesh.local.agent.endpoint)
            try:
                agent_ms, envoy_ms = await _measure(mesh, client, rotations)
            finally:
                client.close()
    return {
        "rotations": float(rotations),
        "rotation_workload_api_p50_ms": statistics.median(agent_ms),
        "rotation_workload_api_p99_ms": _percentile(agent_ms, 0.99),
        "rotation_envoy_p50_ms": statistics.median(envoy_ms),
        "rotation_envoy_p99_ms": _percentile(envoy_ms, 0.99),
        "rotation_envoy_over_workload_api_p50": statistics.median(envoy_ms)
        / statistics.median(agent_ms),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rotations", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="5 rotations")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    figures = asyncio.run(measure_rotation(5 if args.quick else args.rotations))
    for name, value in figures.items():
        print(f"{name:34} {value:10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
