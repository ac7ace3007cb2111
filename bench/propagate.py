"""Policy propagation: from a change at the issuer to 100 enforcers holding it, through one node agent.

Each change is an admin apply over the issuer's admin socket (``sigil-server policy apply``'s path: request, schema,
datastore write, new revision), made ``--changes`` times in turn. For each change the clock starts before the admin
call and stops, per enforcer, when its ``AgentPolicySource`` has applied a snapshot of the new revision (and its
``Authorizer`` compiled it). The issuer holds 1,000 policies over 100 namespaces in its watched directory (SQLite
datastore), so the agent receives and mirrors 1,001 documents per change; each enforcer has its own grpclib
connection to the agent's socket. Two layouts are measured, the same changes in each:

**Processes** (``propagation_*``, the figure to read): ``sigil-server run`` and ``sigil-agent run`` as the operator
starts them, and the 100 enforcers in 4 processes of 25 (bench/_policy_processes.py), as a node runs them: each
process has its own heap and event loop, the two cores are shared among them as the kernel sees fit, and each
service freezes its start-up heap as it does in production (``sigil.kit.heap``). The delays are exact across
processes (``CLOCK_MONOTONIC``, one clock for the host). ``propagation_cpu_ms_per_change`` is the CPU time of all
the processes (issuer, agent, the workers and this one, which makes the admin calls) over the changes, divided
by their number: the work a change costs, which other load on the machine does not inflate as it inflates the
wall-clock delays (``..._issuer``, ``_agent``, ``_enforcers``, ``_bench`` split it by part). It includes the
background work done while the change travels; ``propagation_idle_cpu_ms_per_s`` is that background's rate,
measured over two quiet seconds before the changes. Here the agent attests the enforcers by uid only (no Kubernetes), so each is outside any pod
and the change is a cluster policy with ``{}`` selectors, which every one of them receives.
``propagation_feed_*`` show how the change travelled from issuer to agent, read from the issuer's metrics: the
answers over the changes that were deltas and that were the whole set (``_delta_answers``, ``_full_answers``),
the answer bytes per change (``_bytes_per_change``), and the size of a whole answer for comparison
(``_full_answer_bytes``, from the agent's first fetch). An agent that names its set is answered deltas; an
issuer without deltas has none of these metrics. ``propagation_enforcer_policies_held`` is the most policies an
enforcer held after the changes: the agent scopes its stream to the caller, so an enforcer outside any pod holds
the one cluster policy, and each change brings it one document to judge and compile, not the issuer's 1,001.

**Single process** (``propagation_single_process_*``, the method of the earlier figures, kept so that they can
be compared): the issuer's app, a ``NodeAgent`` and the 100 enforcers on one event loop in this process. The
agent attests them into one pod (a stand-in ``k8s`` attestor) and the change is a namespaced policy selecting it.
The 102 parts then share one heap, and each full pass of the garbage collector scans all of them and stalls all
of them, 0.2-0.6 s on a loaded two-core machine (``propagation_single_process_full_collection_max_ms``, counted
during the first changes); so the same changes are made again after ``gc.freeze()``
(``propagation_single_process_frozen_p50_ms``/``_p99_ms``). ``..._cpu_ms_per_change`` is the median over
changes of this process's CPU time.

``propagation_p50_ms``/``propagation_p99_ms`` are over every (change, enforcer) pair;
``propagation_last_p99_ms`` is the p99 over changes of the time until the last of the 100 held it. In the
processes layout, ``propagation_first_p50_ms`` is the median time until the first of them held it (issuer and
agent, before the fan-out), and ``propagation_admin_call_p50_ms`` how long the admin call took to return.

Results are merged into ``bench/results/enforce.json`` (the keys of ``bench/enforce.py`` survive).

    python bench/propagate.py            # 50 changes in each layout
    python bench/propagate.py --quick    # 10 changes in each, under a minute
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
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import structlog
from _policy_processes import PolicyProcesses, monotonic
from _results import merge_results  # bench/ is the script's own directory

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from enforcer.policy_docs import ap, cap, dump, rule, sa
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
IDLE = 2.0


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


def _cluster_change(number: int) -> str:
    """The n-th version of one admin cluster policy selecting every workload, in a pod or not."""
    callers = [rule([sa("bench", "ns-000")], ports=[1024 + number], action="Allow")]
    return dump(cap("bench", rules=callers))


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


async def measure_processes(changes: int) -> dict[str, Any]:
    """The processes layout (see the module docstring); its figures."""
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="sgp-") as name:
        directory = Path(name)
        policies = directory / "policies"
        policies.mkdir()
        for file, text in _policy_files().items():
            (policies / file).write_text(text)
        layout = PolicyProcesses(directory, policies, ENFORCERS)
        try:
            await layout.start()
            revision = max(max(seen) for seen in layout.arrived)
            runs: list[list[float]] = []
            admin_calls: list[float] = []
            # The background (the issuer's directory poll, long polls held open) over a quiet second, for
            # reading the CPU per change: a change that takes longer on a loaded machine carries more of it.
            idle_started = layout.cpu()
            await asyncio.sleep(IDLE)
            idle = sum(layout.cpu().values()) - sum(idle_started.values())
            async with SocketAdmin(layout.admin_socket) as admin:
                answers_started = await layout.feed_answers()
                cpu_started = layout.cpu()
                for number in range(changes):
                    started = monotonic()
                    await admin.apply_policies("bench.yaml", _cluster_change(number))
                    admin_calls.append((monotonic() - started) * 1000)
                    revision = await asyncio.wait_for(layout.wait_past(revision), TIMEOUT)
                    runs.append(layout.delays(revision, started))
                cpu_ended = layout.cpu()
                cpu = {part: cpu_ended[part] - cpu_started[part] for part in cpu_ended}
                answers_ended = await layout.feed_answers()
        finally:
            await layout.aclose()
    samples = [delay for delays in runs for delay in delays]
    lasts = [max(delays) for delays in runs]
    return {
        "propagation_admin_call_p50_ms": round(statistics.median(admin_calls), 1),
        "propagation_first_p50_ms": round(statistics.median(min(delays) for delays in runs), 1),
        "propagation_p50_ms": round(statistics.median(samples), 1),
        "propagation_p99_ms": round(_percentile(samples, 0.99), 1),
        "propagation_last_p99_ms": round(_percentile(lasts, 0.99), 1),
        "propagation_cpu_ms_per_change": round(sum(cpu.values()) * 1000 / changes, 1),
        **{
            f"propagation_cpu_ms_per_change_{part}": round(used * 1000 / changes, 1)
            for part, used in cpu.items()
        },
        "propagation_idle_cpu_ms_per_s": round(idle * 1000 / IDLE, 1),
        "propagation_processes": len(layout.pids),
        "propagation_enforcer_policies_held": max(layout.held),
        **_feed_figures(answers_started, answers_ended, changes),
    }


def _feed_figures(
    started: dict[str, float], ended: dict[str, float], changes: int
) -> dict[str, float]:
    """What the issuer sent the agent over the changes (the agent's first, whole, answer came before them)."""
    moved = {kind: ended[kind] - started[kind] for kind in ended}
    return {
        "propagation_feed_full_answers": moved["full"],
        "propagation_feed_delta_answers": moved["delta"],
        "propagation_feed_bytes_per_change": round(
            (moved["full_bytes"] + moved["delta_bytes"]) / changes
        ),
        "propagation_feed_full_answer_bytes": round(
            started["full_bytes"] / started["full"] if started["full"] else 0
        ),
    }


async def measure(changes: int) -> dict[str, Any]:
    """The single-process layout (see the module docstring); its figures."""
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
        "propagation_single_process_p50_ms": round(statistics.median(samples), 1),
        "propagation_single_process_p99_ms": round(_percentile(samples, 0.99), 1),
        "propagation_single_process_last_p99_ms": round(_percentile(lasts, 0.99), 1),
        "propagation_single_process_cpu_ms_per_change": round(
            statistics.median(cpu for _, cpu in runs), 1
        ),
        "propagation_single_process_full_collections": len(pauses),
        "propagation_single_process_full_collection_max_ms": round(max(pauses, default=0.0), 1),
        "propagation_single_process_frozen_p50_ms": round(statistics.median(frozen_samples), 1),
        "propagation_single_process_frozen_p99_ms": round(_percentile(frozen_samples, 0.99), 1),
        "propagation_changes": changes,
        "propagation_enforcers": ENFORCERS,
        "propagation_issuer_policies": NAMESPACES * POLICIES_PER_NAMESPACE + 1,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--quick", action="store_true", help="10 changes in each layout, under a minute"
    )
    parser.add_argument("--changes", type=int, help="how many changes (default 50, quick 10)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    # Every snapshot is logged at info by agent and enforcers alike; the benchmark measures work, not logging.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    changes = args.changes or (10 if args.quick else 50)
    started = time.perf_counter()
    figures = asyncio.run(measure(changes))
    figures |= asyncio.run(measure_processes(changes))
    figures["propagation_quick"] = args.quick
    figures["python"] = platform.python_version()
    merge_results(args.output, figures)
    print(json.dumps(figures, indent=2, sort_keys=True))
    print(f"[{time.perf_counter() - started:.1f} s in all]", file=sys.stderr)


if __name__ == "__main__":
    main()
