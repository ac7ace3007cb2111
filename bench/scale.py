"""A cluster at scale: pods on simulated nodes, their agents and one real issuer, from a cold start through an hour.

Everything that decides or signs is real: etcd and kube-apiserver (tests/sigil_testing/controlplane.py, the binaries
in ~/.cache/sigil/tools), the issuer (``sigil-server``'s app, SQLite) in its own process watching the pods through
the API server, and per node the agent's SVID cache talking to the issuer over mTLS with its own agent SVID. What is
simulated is the node: a Node object, an agent pod of ServiceAccount ``sigil-agent`` on it whose projected token
(TokenRequest, as the kubelet asks) the agent attests with, and workload pods (``nodeName`` set, no kubelet). The
agents run as tasks of this process (100 processes would not fit the machine beside the control plane); each one
asks for its pods' SVIDs as the Workload API does for an attested caller in a pod.

Figures, per size (``pods_on_nodes``):

1. ``cold_s``: from the agents' first attestation until every pod holds its SVID (all agents start at once, the
   pods already exist: a DaemonSet rollout onto a running cluster). ``svids_per_s`` is pods / ``cold_s``.
2. ``issuer_cpu_s_per_1000``: the issuer process's CPU seconds (``/proc``) during that phase per 1,000 SVIDs,
   attestation of the agents included; compare ``issuer_cpu_s_per_1000_rotating``, the same cost when SVIDs are
   re-issued by   rotation (see 4).
3. ``tokenreviews``: TokenReview requests the API server served during the cold phase, from its own
   ``apiserver_request_total`` metric (one per agent attestation; workloads behind an agent need none).
4. ``rotation_peak_over_mean``: one simulated hour after the cold start, the issuer's clock and the agents' moved
   together one second at a time: SVIDs asked for per simulated second, the busiest second over the mean from the
   first rotation on. ``rotated`` counts them. At these rates a second holds a handful of SVIDs, so chance alone
   makes the busiest second several times the mean; the baseline in the same run, ``uniform_peak_over_mean``, is the
   same figure for as many moments drawn uniformly over the same span (perfectly spread load), and
   ``peak_over_uniform_peak`` compares the two. ``rotation_peak_over_mean_per_minute`` is the figure per minute.
   ``issuer_cpu_s_per_1000_rotating`` is the issuer's CPU per 1,000 SVIDs over the hour: rotations come a few at a
   time, so each pays a whole request (``rotating_over_cold`` against the cold start's large batches).

``--quick``: 1,000 pods on 10 nodes (under a minute). The default run adds 10,000 pods on 100 nodes, each size on a
fresh control plane; ``--pods N --nodes M`` runs one size. The cluster's objects and the issuer's process are
``bench/_cluster.py``'s. Writes bench/results/scale.json.

    python bench/scale.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from _results import merge_results  # bench/ is the script's own directory

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from _cluster import CLUSTER, IssuerProcess, Node, populate, tokenreviews
from sigil_testing.controlplane import ControlPlane, build_tools
from sigil_testing.realkube import fresh_namespace

from sigil.ca.bundle import TrustBundle
from sigil.ca.spiffe_id import TrustDomain
from sigil.issuer.client import IssuerClient, X509SvidRequest, X509SvidResult
from sigil.node_agent.attestation.peer import PeerCredentials
from sigil.node_agent.attestation.selectors import Pod, Selector, WorkloadAttestation
from sigil.node_agent.settings import RotationSettings
from sigil.node_agent.svid_cache.cache import SvidCache

RESULTS = Path(__file__).parent / "results" / "scale.json"
HOUR = 3600


# ---------------------------------------------------------------------------------------------- the agents


class _Clock:
    """The agents' clock: real time until the simulated hour freezes it and moves it by hand."""

    def __init__(self) -> None:
        self.frozen: datetime | None = None

    def __call__(self) -> datetime:
        return self.frozen if self.frozen is not None else datetime.now(UTC)


class CountingClient(IssuerClient):
    """The agent's real issuer client, counting the SVIDs it asks for per second of ``clock``."""

    def __init__(self, url: str, *, bundle: TrustBundle, clock: _Clock, counts: Counter[int]):
        super().__init__(url, bundle=bundle)
        self._clock = clock
        self._counts = counts

    async def batch_x509_svids(self, requests: Sequence[X509SvidRequest]) -> list[X509SvidResult]:
        self._counts[int(self._clock().timestamp())] += len(requests)
        return await super().batch_x509_svids(requests)


def _caller(pod: Pod) -> WorkloadAttestation:
    # What the k8s attestor establishes for a caller in this pod (the unix facts do not matter to the issuer).
    peer = PeerCredentials(pid=os.getpid(), uid=1000, gid=1000, start_time=0)
    selectors = frozenset(
        {Selector("k8s", f"ns:{pod.namespace}"), Selector("k8s", f"pod-uid:{pod.uid}")}
    )
    return WorkloadAttestation(peer, selectors, pod=pod)


async def _agent(
    node: Node, issuer: IssuerProcess, clock: _Clock, counts: Counter[int], seed: int
) -> tuple[SvidCache, CountingClient]:
    bundle = TrustBundle.parse_pem(TrustDomain("example.org"), issuer.bundle)
    client = CountingClient(issuer.url, bundle=bundle, clock=clock, counts=counts)
    await client.attest_k8s(node.agent_token, CLUSTER)
    settings = RotationSettings(idle_timeout=timedelta(days=1))
    cache = SvidCache(client, settings=settings, clock=clock, rng=random.Random(seed))  # noqa: S311 -- jitter
    await cache.start(background=False)
    return cache, client


# ---------------------------------------------------------------------------------------------- one size


async def one_size(directory: Path, *, pods: int, nodes: int) -> dict[str, Any]:
    plane = ControlPlane(directory / "controlplane", tools=build_tools())
    await asyncio.to_thread(plane.start)
    issuer: IssuerProcess | None = None
    agents: list[tuple[SvidCache, CountingClient]] = []
    try:
        namespace = await asyncio.to_thread(fresh_namespace, plane, "scale")
        started = time.perf_counter()
        cluster = await asyncio.to_thread(populate, plane, namespace, nodes, pods)
        populate_s = time.perf_counter() - started
        issuer = await IssuerProcess.start(directory / "issuer", plane, namespace.name)
        await issuer.say("sync " + json.dumps({n.name: len(n.pods) for n in cluster}))
        reviews, cpu = await asyncio.to_thread(tokenreviews, plane), issuer.cpu()
        clock, counts = _Clock(), Counter[int]()

        # 1-3. Cold: every agent attests and asks for its pods' SVIDs, all at once.
        started = time.perf_counter()

        async def node_up(i: int, node: Node) -> None:
            agent = await _agent(node, issuer, clock, counts, seed=i)
            agents.append(agent)
            answers = await asyncio.gather(*(agent[0].x509_svids(_caller(p)) for p in node.pods))
            assert all(len(a) == 1 for a in answers), "every pod gets exactly its SVID"

        await asyncio.gather(*(node_up(i, n) for i, n in enumerate(cluster)))
        cold_s = time.perf_counter() - started
        cold_cpu = issuer.cpu() - cpu
        reviews = await asyncio.to_thread(tokenreviews, plane) - reviews

        # 4. One simulated hour, agents and issuer on one frozen clock moved a second at a time.
        counts.clear()
        base = datetime.now(UTC).replace(microsecond=0)
        cpu = issuer.cpu()
        for second in range(1, HOUR + 1):
            clock.frozen = base + timedelta(seconds=second)
            due = [
                cache
                for cache, _ in agents
                if (wake := cache.next_wakeup()) is not None and wake <= clock.frozen
            ]
            if due:
                await issuer.say("at " + clock.frozen.isoformat())
                await asyncio.gather(*(cache.run_due() for cache in due))
        rotation_cpu = issuer.cpu() - cpu
    finally:
        for cache, client in agents:
            await cache.aclose()
            await client.aclose()
        if issuer is not None:
            await issuer.stop()
        await asyncio.to_thread(plane.stop)
    rotated = sum(counts.values())
    end = int(base.timestamp()) + HOUR + 1
    first = min(counts)
    buckets = [counts.get(s, 0) for s in range(first, end)]
    mean = statistics.fmean(buckets)
    minutes = [sum(buckets[m : m + 60]) for m in range(0, len(buckets) - 59, 60)]
    uniform = Counter(int(t) for t in (random.uniform(first, end) for _ in range(rotated)))  # noqa: S311
    uniform_buckets = [uniform.get(s, 0) for s in range(first, end)]
    peak_over_mean = max(buckets) / mean
    uniform_peak_over_mean = max(uniform_buckets) / statistics.fmean(uniform_buckets)
    per_1000_cold = cold_cpu / (pods / 1000)
    per_1000_rotating = rotation_cpu / (rotated / 1000)
    return {
        "pods": pods,
        "nodes": nodes,
        "populate_s": populate_s,
        "cold_s": cold_s,
        "svids_per_s": pods / cold_s,
        "issuer_cpu_s_per_1000": per_1000_cold,
        "issuer_cpu_s_per_1000_rotating": per_1000_rotating,
        "rotating_over_cold": per_1000_rotating / per_1000_cold,
        "tokenreviews": reviews,
        "rotated": rotated,
        "rotation_peak_over_mean": peak_over_mean,
        "uniform_peak_over_mean": uniform_peak_over_mean,
        "peak_over_uniform_peak": peak_over_mean / uniform_peak_over_mean,
        "rotation_peak_over_mean_per_minute": max(minutes) / statistics.fmean(minutes),
        "rotation_peak_per_s": max(buckets),
        "rotation_peak_at_s": buckets.index(max(buckets)) + first - int(base.timestamp()),
        "rotation_mean_per_s": mean,
    }


async def main(quick: bool, size: tuple[int, int] | None = None) -> dict[str, Any]:
    started = time.perf_counter()
    sizes = [(1000, 10)] if quick else [(1000, 10), (10000, 100)]
    if size is not None:
        sizes = [size]
    results: dict[str, Any] = {"quick": quick}
    for pods, nodes in sizes:
        directory = Path(tempfile.mkdtemp(dir="/tmp", prefix="sgs-"))
        figures = await one_size(directory, pods=pods, nodes=nodes)
        results[f"{pods}_pods_on_{nodes}_nodes"] = figures
        print(json.dumps({f"{pods}_pods_on_{nodes}_nodes": figures}, indent=2), flush=True)
    results["seconds"] = time.perf_counter() - started
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="1,000 pods on 10 nodes, under a minute"
    )
    parser.add_argument("--pods", type=int, help="run one size: this many pods (with --nodes)")
    parser.add_argument("--nodes", type=int, help="run one size: on this many nodes (with --pods)")
    parser.add_argument("--verbose", action="store_true", help="the agents' warnings on stderr")
    args = parser.parse_args()
    if (args.pods is None) != (args.nodes is None) or (args.nodes is not None and args.nodes < 1):
        parser.error("--pods and --nodes go together, with at least one node")
    level = logging.WARNING if args.verbose else logging.ERROR
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    size = (args.pods, args.nodes) if args.pods is not None else None
    figures = asyncio.run(main(args.quick, size))
    merge_results(RESULTS, figures)
    print(json.dumps(figures, indent=2))
