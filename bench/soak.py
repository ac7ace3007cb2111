"""A soak: sustained issuance and Workload API traffic at about 80% of the capacity measured in the same run.

1. Capacity: for a few seconds, both kinds at once, 8 closed-loop callers each, drive (a) batches of 10 X509-SVIDs
   through the real issuer (SQLite, mutual TLS, a join-token agent whose registration entry matches the batch's
   selectors) and (b) ``FetchJWTSVID`` on a real Workload API socket (kernel credentials, the unix attestor, an
   in-memory identity source). Each kind's rate within that mix is its capacity.
2. Soak: both at ``--load`` (0.8) of their capacity, open loop (each call starts on its schedule, whether the one
   before it has finished or not, so a slow server shows as latency, not as a slower clock), for ``--minutes``
   (10; 30 seconds with ``--quick``). Per window (a minute; 10 s with ``--quick``): calls, errors, p50/p95/p99
   latency from the scheduled start, the process's RSS and the datastore's bytes on disk. At most 32 calls of a
   kind are outstanding, as an agent bounds its own; a call due past that is shed and counted, so an overloaded
   machine shows as shed calls and a lower achieved rate instead of an ever longer queue.

The figures: errors (must be zero: the exit status says so), the achieved rate over capacity (the same-run
baseline), the RSS and datastore slopes (least squares over the windows after the first, per minute), and the
last window's p99 over the first's. Writes ``bench/results/soak.json``.

    python bench/soak.py [--quick] [--minutes N] [--load F]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from grpclib.client import Channel
from grpclib.const import Cardinality

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from _results import RESULTS, merge_results
from sigil_testing.issuer import attested_agent, issuer_settings, running_issuer
from sigil_testing.pki import Domain

from sigil.ca.keys import generate_key, private_key_der
from sigil.issuer.client import X509SvidRequest, make_csr
from sigil.node_agent._proto import workload_pb2 as pb
from sigil.node_agent.attestation.attestors.unix import UnixAttestor
from sigil.node_agent.attestation.caller import Attestation
from sigil.node_agent.attestation.selectors import Selector
from sigil.node_agent.identity_source import TrustBundles, WorkloadX509Svid
from sigil.node_agent.memory_source import InMemoryIdentitySource
from sigil.node_agent.workload_api.endpoint import WorkloadApiServer, WorkloadApiSettings

BATCH = 10
CALLERS = 8
#: Calls of one kind outstanding at most during the soak (past it, a scheduled call is shed and counted).
MAX_IN_FLIGHT = 4 * CALLERS
SELECTOR = f"unix:uid:{os.getuid()}"
Call = Callable[[], Awaitable[None]]


@dataclass
class _Window:
    started: float
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"issue": [], "workload": []})
    errors: dict[str, int] = field(default_factory=lambda: {"issue": 0, "workload": 0})
    shed: dict[str, int] = field(default_factory=lambda: {"issue": 0, "workload": 0})


def _rss_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _bytes_under(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x (0 with fewer than two points)."""
    if len(points) < 2:
        return 0.0
    xs, ys = [x for x, _ in points], [y for _, y in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else 0.0


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@asynccontextmanager
async def _targets(root: Path) -> AsyncIterator[tuple[Call, Call, Path]]:
    """The issuance call, the Workload API call, and the datastore's directory."""
    data = root / "data"
    settings = issuer_settings(data, rate_per_second=1e6, rate_burst=1e6)
    async with running_issuer(settings) as server, attested_agent(server) as client:
        agent = client.agent_svid
        assert agent is not None
        issuer = server.issuer
        workload_id = issuer.ca.settings.trust_domain.spiffe_id("soak", "workload")
        await issuer.registry.create_entry(
            workload_id, agent.svid.spiffe_id, [SELECTOR], now=issuer.ca.now()
        )
        csrs = [make_csr(generate_key()) for _ in range(BATCH)]
        batch = [X509SvidRequest(csr, selectors=(SELECTOR,)) for csr in csrs]

        async def issue() -> None:
            results = await client.batch_x509_svids(batch)
            if not all(r.svids for r in results):
                raise RuntimeError(f"refused: {[r.error for r in results if not r.svids]}")

        domain = Domain("example.org", now=None)
        source = InMemoryIdentitySource(
            TrustBundles(
                trust_domain=domain.trust_domain, bundles={domain.trust_domain: domain.bundle}
            ),
            mint_jwt=domain.mint_jwt,
        )
        issued = domain.mint(spiffe_id=domain.id("soak", "workload"))
        source.put(
            WorkloadX509Svid(
                spiffe_id=issued.svid.spiffe_id,
                cert_chain=issued.svid.chain_der(),
                private_key=private_key_der(issued.key),
                hint="",
                federates_with=frozenset(),
            ),
            selectors=[Selector.parse(SELECTOR)],
        )
        socket = root / "agent.sock"
        async with WorkloadApiServer(
            WorkloadApiSettings(socket_path=socket),
            source=source,
            attestor=Attestation([UnixAttestor()]),
        ):
            channels = [Channel(path=str(socket)) for _ in range(CALLERS)]
            turn = 0
            request = pb.JWTSVIDRequest(audience=["soak"])

            async def workload() -> None:
                nonlocal turn
                turn = (turn + 1) % len(channels)
                async with channels[turn].request(
                    "/SpiffeWorkloadAPI/FetchJWTSVID",
                    Cardinality.UNARY_UNARY,
                    pb.JWTSVIDRequest,
                    pb.JWTSVIDResponse,
                    metadata={"workload.spiffe.io": "true"},
                    timeout=30,
                ) as stream:
                    await stream.send_message(request, end=True)
                    reply = await stream.recv_message()
                    if reply is None or not reply.svids:
                        raise RuntimeError("no JWT-SVID")

            try:
                yield issue, workload, data
            finally:
                for channel in channels:
                    channel.close()


async def _capacity(calls: dict[str, Call], seconds: float) -> dict[str, float]:
    """Calls per second of each kind while all run at once, CALLERS closed-loop callers each: the capacity of
    the mix, which is what the soak runs (measured alone, each would claim the whole machine)."""
    done = dict.fromkeys(calls, 0)
    deadline = time.perf_counter() + seconds

    async def caller(kind: str) -> None:
        while time.perf_counter() < deadline:
            await calls[kind]()
            done[kind] += 1

    started = time.perf_counter()
    await asyncio.gather(*(caller(kind) for kind in calls for _ in range(CALLERS)))
    elapsed = time.perf_counter() - started
    return {kind: count / elapsed for kind, count in done.items()}


async def _soak(
    calls: dict[str, tuple[Call, float]], data: Path, *, seconds: float, window: float
) -> list[dict[str, Any]]:
    """Each call at its rate (open loop) for ``seconds``; figures per window."""
    windows = [_Window(time.perf_counter())]
    tasks: set[asyncio.Task[None]] = set()
    running = dict.fromkeys(calls, 0)
    samples: list[dict[str, Any]] = []

    async def timed(kind: str, call: Call, scheduled: float) -> None:
        current = windows[-1]
        running[kind] += 1
        try:
            await call()
        except Exception:  # every failure of any kind is what the soak counts
            current.errors[kind] += 1
            return
        finally:
            running[kind] -= 1
        current.latencies[kind].append((time.perf_counter() - scheduled) * 1000)

    async def schedule(kind: str, call: Call, rate: float, end: float) -> None:
        interval, next_at = 1.0 / rate, time.perf_counter()
        while next_at < end:
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            next_at += interval
            if running[kind] >= MAX_IN_FLIGHT:
                # As an agent would: no more than so many calls outstanding. A call not started is counted
                # (shed), so an overloaded machine shows as shed calls and a lower achieved rate.
                windows[-1].shed[kind] += 1
                continue
            task = asyncio.create_task(timed(kind, call, next_at - interval))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    def close_window() -> None:
        ended = windows[-1]
        sample: dict[str, Any] = {
            "minute": round((ended.started - windows[0].started) / 60, 3),
            "rss_mb": round(_rss_mb(), 1),
            "datastore_kb": round(_bytes_under(data) / 1024, 1),
        }
        for kind, latencies in ended.latencies.items():
            sample[kind] = {
                "calls": len(latencies),
                "errors": ended.errors[kind],
                "shed": ended.shed[kind],
                "p50_ms": round(_percentile(latencies, 0.50), 2),
                "p95_ms": round(_percentile(latencies, 0.95), 2),
                "p99_ms": round(_percentile(latencies, 0.99), 2),
            }
        samples.append(sample)
        print(
            f"  minute {sample['minute']:6.2f}: rss {sample['rss_mb']} MB, datastore "
            f"{sample['datastore_kb']} KB, "
            + ", ".join(
                f"{k} {sample[k]['calls']} calls p99 {sample[k]['p99_ms']} ms err {sample[k]['errors']}"
                f" shed {sample[k]['shed']}"
                for k in ended.latencies
            )
        )

    start = windows[0].started
    end = start + seconds
    schedulers = [
        asyncio.create_task(schedule(kind, call, rate, end)) for kind, (call, rate) in calls.items()
    ]
    count = max(1, round(seconds / window))
    for index in range(1, count):
        await asyncio.sleep(max(0.0, start + index * window - time.perf_counter()))
        close_window()
        windows.append(_Window(time.perf_counter()))
    # The last window ends when its last call does: calls still running at the end count in it.
    await asyncio.gather(*schedulers)
    if tasks:
        await asyncio.gather(*tasks)
    close_window()
    return samples


async def _run(minutes: float, window: float, probe: float, load: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="sg-soak-") as tmp:
        async with _targets(Path(tmp)) as (issue, workload, data):
            await issue()  # warm: the first batch pays for the TLS session and the entry lookup
            await workload()
            capacity = await _capacity({"issue": issue, "workload": workload}, probe)
            print(
                f"capacity: issue {capacity['issue']:.1f} batches/s ({capacity['issue'] * BATCH:.0f} "
                f"SVIDs/s), workload {capacity['workload']:.1f} FetchJWTSVID/s; soaking at {load:.0%}"
            )
            calls = {
                "issue": (issue, capacity["issue"] * load),
                "workload": (workload, capacity["workload"] * load),
            }
            samples = await _soak(calls, data, seconds=minutes * 60, window=window)
    steady = samples[1:] or samples
    total = {k: sum(s[k]["calls"] for s in samples) for k in calls}
    errors = sum(s[k]["errors"] for s in samples for k in calls)
    shed = {k: sum(s[k]["shed"] for s in samples) for k in calls}
    seconds = minutes * 60
    figures: dict[str, Any] = {
        "minutes": minutes,
        "load": load,
        "batch": BATCH,
        "capacity_issue_batches_per_s": round(capacity["issue"], 2),
        "capacity_workload_per_s": round(capacity["workload"], 2),
        "errors": errors,
        "calls": total,
        "shed": shed,
        "achieved_over_capacity": {k: round(total[k] / seconds / capacity[k], 3) for k in calls},
        "rss_slope_mb_per_min": round(_slope([(s["minute"], s["rss_mb"]) for s in steady]), 3),
        "datastore_slope_kb_per_min": round(
            _slope([(s["minute"], s["datastore_kb"]) for s in steady]), 3
        ),
        "p99_last_over_first": {
            k: round(samples[-1][k]["p99_ms"] / samples[0][k]["p99_ms"], 3)
            if samples[0][k]["p99_ms"]
            else None
            for k in calls
        },
        "windows": samples,
    }
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="30 s in 10 s windows (under a minute in all)"
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to soak (default 10)")
    parser.add_argument(
        "--load", type=float, default=0.8, help="fraction of measured capacity (default 0.8)"
    )
    args = parser.parse_args()
    if not 0 < args.load <= 1 or args.minutes <= 0:
        parser.error("--load must be in (0, 1] and --minutes positive")
    # Every issuance and Workload API call logs at info; the soak measures work, not logging.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    minutes, window, probe = (0.5, 10.0, 4.0) if args.quick else (args.minutes, 60.0, 15.0)
    figures = asyncio.run(_run(minutes, window, probe, args.load))
    figures["quick"] = args.quick
    merge_results(RESULTS / "soak.json", figures)
    for key, value in figures.items():
        if key != "windows":
            print(f"{key:>28}: {value}")
    return 0 if figures["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
