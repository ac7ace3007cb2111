"""Policy propagation: from a change at the issuer to 100 enforcers holding it, through one node agent.

One real issuer (``sigil-server``'s app on 127.0.0.1, SQLite datastore, 1,000 policies over 100 namespaces in its
watched directory), one real node agent (``NodeAgent``: join-token attestation, the issuer's policy long poll, the
Workload API socket with SO_PEERCRED attestation), and 100 enforcers: each an ``AgentPolicySource`` with its own
grpclib connection to the agent socket, feeding an ``Authorizer`` that compiles every snapshot.

Each change is an admin apply over the issuer's admin socket (``sigil-server policy apply``'s path: request, schema,
datastore write, new revision), made ``--changes`` times in turn. For each change the clock starts before the admin
call and stops, per enforcer, when its source has applied a snapshot of the new revision (and its ``Authorizer``
compiled it). ``propagation_p50_ms``/``propagation_p99_ms`` are over every (change, enforcer) pair;
``propagation_last_p99_ms`` is the p99 over changes of the time until the last of the 100 held it.
``propagation_cpu_ms_per_change`` is the median CPU time this process (issuer, agent and the 100 enforcers
together) spent per change: the work the change costs, which other load on the machine does not inflate as it
inflates the wall-clock delays.

Then the same number of changes again after ``gc.freeze()`` (``propagation_frozen_p50_ms``/``_p99_ms``): this one
process holds the heaps of 102 parts, so each full pass of the garbage collector scans all of them and stalls all
of them, 0.2-0.6 s on the loaded two-core machine (``propagation_full_collection_max_ms``, counted during the
first changes), where separate processes would each scan their own heap. Freezing what was built before the
first change, as a long-running service does after its start, leaves the full passes only what changes.

What this leaves out, and why it is conservative anyway: the enforcers are in-process clients, so issuer, agent and
all 100 clients share one event loop and one core (in a cluster they are separate processes on separate cores);
since they are all this process, the agent attests them into one pod (a stand-in ``k8s`` attestor), so its
per-workload scoping runs once per change rather than once per pod.

Results are merged into ``bench/results/enforce.json`` (the keys of ``bench/enforce.py`` survive).

    python bench/propagate.py            # 50 changes
    python bench/propagate.py --quick    # 10 changes, well under a minute
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import platform
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import structlog
from _results import merge_results  # bench/ is the script's own directory

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from enforcer.policy_docs import ap, dump, rule, sa
from enforcer.policy_world import PodAttestor, policy_world
from prometheus_client import CollectorRegistry

from sigil.ca.spiffe_id import TrustDomain
from sigil.enforcer.authorizer import Authorizer
from sigil.enforcer.metrics import EnforcerMetrics
from sigil.enforcer.policy.decision import Target
from sigil.enforcer.policy.receiver import AgentPolicies, AgentPolicySource
from sigil.issuer.admin import SocketAdmin

RESULTS = Path(__file__).parent / "results" / "enforce.json"
ENFORCERS = 100
NAMESPACES = 100
POLICIES_PER_NAMESPACE = 10
POD = PodAttestor("ns-000", {"app": "app-0"})
TIMEOUT = 30.0


def _policy_files() -> dict[str, str]:
    files = {}
    for n in range(NAMESPACES):
        namespace = f"ns-{n:03d}"
        docs = [
            ap(
                f"app-{a}-callers",
                namespace=namespace,
                match={"app": f"app-{a}"},
                rules=[rule([sa(f"app-{(a + 1) % POLICIES_PER_NAMESPACE}")], ports=[8080])],
            )
            for a in range(POLICIES_PER_NAMESPACE)
        ]
        files[f"{namespace}.yaml"] = dump(*docs)
    return files


def _change(number: int) -> str:
    """The n-th version of one admin policy selecting the enforcers' pod (its port moves each time)."""
    callers = [rule([sa("bench")], ports=[1024 + number])]
    return dump(ap("bench", namespace="ns-000", match={"app": "app-0"}, rules=callers))


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@contextlib.contextmanager
def _full_collections() -> Iterator[list[float]]:
    """The durations (ms) of the garbage collector's full (generation 2) passes while the block runs."""
    pauses: list[float] = []
    started = [0.0]

    def watch(phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            pauses.append((time.perf_counter() - started[0]) * 1000)

    gc.callbacks.append(watch)
    try:
        yield pauses
    finally:
        gc.callbacks.remove(watch)


async def measure(changes: int) -> dict[str, Any]:
    """Run the propagation benchmark; the figures."""
    async with policy_world(_policy_files()) as world, world.agent(POD):
        issuer = world.server.issuer
        sources = [AgentPolicySource(world.endpoint) for _ in range(ENFORCERS)]
        arrived: list[dict[int, float]] = [{} for _ in sources]
        for number, source in enumerate(sources):
            Authorizer(
                trust_domain=TrustDomain("example.org"),
                target=Target("ns-000", {"app": "app-0"}),
                policies=source,
                metrics=EnforcerMetrics(CollectorRegistry()),
            )

            def record(applied: AgentPolicies, seen: dict[int, float] = arrived[number]) -> None:
                seen.setdefault(applied.revision, time.perf_counter())

            source.subscribe(record)
            await source.start()
        try:
            first = issuer.policies.revision
            await asyncio.wait_for(
                asyncio.gather(*(s.wait_for_revision(first) for s in sources)), TIMEOUT
            )
            async with SocketAdmin(world.server.admin_socket) as admin:

                async def change(number: int) -> tuple[list[float], float]:
                    """One admin apply until every enforcer holds it: the delays, the CPU ms."""
                    cpu_started = time.process_time()
                    started = time.perf_counter()
                    await admin.apply_policies("bench.yaml", _change(number))
                    revision = issuer.policies.revision
                    await asyncio.wait_for(
                        asyncio.gather(*(s.wait_for_revision(revision) for s in sources)), TIMEOUT
                    )
                    delays = [
                        (min(t for r, t in seen.items() if r >= revision) - started) * 1000
                        for seen in arrived
                    ]
                    return delays, (time.process_time() - cpu_started) * 1000

                with _full_collections() as pauses:
                    runs = [await change(number) for number in range(changes)]
                # As a long-running service would after its start: the heap built so far out of the
                # collector's full passes (see the module docstring), then the same number of changes.
                gc.collect()
                gc.freeze()
                try:
                    frozen = [await change(changes + number) for number in range(changes)]
                finally:
                    gc.unfreeze()
        finally:
            for source in sources:
                await source.aclose()
    samples = [delay for delays, _ in runs for delay in delays]
    lasts = [max(delays) for delays, _ in runs]
    frozen_samples = [delay for delays, _ in frozen for delay in delays]
    return {
        "propagation_p50_ms": round(statistics.median(samples), 1),
        "propagation_p99_ms": round(_percentile(samples, 0.99), 1),
        "propagation_last_p99_ms": round(_percentile(lasts, 0.99), 1),
        "propagation_cpu_ms_per_change": round(statistics.median(cpu for _, cpu in runs), 1),
        "propagation_full_collections": len(pauses),
        "propagation_full_collection_max_ms": round(max(pauses, default=0.0), 1),
        "propagation_frozen_p50_ms": round(statistics.median(frozen_samples), 1),
        "propagation_frozen_p99_ms": round(_percentile(frozen_samples, 0.99), 1),
        "propagation_changes": changes,
        "propagation_enforcers": ENFORCERS,
        "propagation_issuer_policies": NAMESPACES * POLICIES_PER_NAMESPACE + 1,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="10 changes, well under a minute")
    parser.add_argument("--changes", type=int, help="how many changes (default 50, quick 10)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    # Every snapshot is logged at info by agent and enforcers alike; the benchmark measures work, not logging.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    changes = args.changes or (10 if args.quick else 50)
    started = time.perf_counter()
    figures = asyncio.run(measure(changes))
    figures["propagation_quick"] = args.quick
    figures["python"] = platform.python_version()
    merge_results(args.output, figures)
    print(json.dumps(figures, indent=2, sort_keys=True))
    print(f"[{time.perf_counter() - started:.1f} s in all]", file=sys.stderr)


if __name__ == "__main__":
    main()
