"""SVIDs per second through the running issuer (mTLS, batches of 100, four agents) against in-process minting.

Why: the service adds HTTP, JSON, TLS, agent authentication, node authorization and the pod cache in front of the
CA; the bar is that it keeps at least 85% of the CA's own minting rate on the same core (``ratio``). On a machine
shared with other work the wall-clock rates move with everyone else's load, so the CPU time per SVID is measured
too (the issuer's process with its threads, plus its workers): ``ratio_cpu`` is in-process CPU per SVID over the
service's, what the service adds whatever share of the cores it got. The agents run
in a process of their own (``bench/_issue_agents.py``) on the other core, as agents run on other nodes: their TLS
and parsing are not the issuer's cost. The in-process figure is the CA's batch minting with the same CSRs, in the
issuer's process on the issuer's core, in the same run.

Then issuance with the signing done in worker processes (``ca.signing_workers``): the issuer unpinned, with 1 (in
process) and 2 workers, the same agents; ``workers_speedup`` is the rate with 2 over the rate with 1, and
``workers_*_server_cpu_us`` and ``workers_2_signing_cpu_us`` split the CPU per SVID between the server's own process
and its workers (the server's share is what bounds the speedup, by Amdahl's law). Also
TokenReview-authenticated requests per second against the kube-apiserver stand-in, verdict cache warm and cold.
Writes ``bench/results/issue.json``.

    python bench/issue.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from _results import RESULTS, merge_results
from sigil_testing.issuer import issuer_settings, running_issuer
from sigil_testing.kube import KubeApiServer

from sigil.ca.keys import generate_key
from sigil.ca.service import X509Request
from sigil.issuer.client import make_csr

_AGENTS = Path(__file__).parent / "_issue_agents.py"


class _Cluster:
    """The kube-apiserver stand-in with one node per agent, ``batch`` pods on each, and an agent pod per node."""

    def __init__(self, kube: KubeApiServer, agents: int, batch: int) -> None:
        self.kube = kube
        self.nodes = [f"node-{i}" for i in range(agents)]
        self.pods: dict[str, list[dict[str, Any]]] = {}
        self.agent_pods: dict[str, dict[str, Any]] = {}
        for node in self.nodes:
            kube.add_node(node)
            self.pods[node] = [
                kube.add_pod("bench", f"{node}-p{i}", node_name=node, service_account="app")
                for i in range(batch)
            ]
            self.agent_pods[node] = kube.add_pod(
                "sigil-system", f"agent-{node}", node_name=node, service_account="sigil-agent"
            )

    def job(self, url: str, bundle_pem: bytes, csrs: list[bytes], seconds: float) -> dict[str, Any]:
        """What the agents' process needs: where, whom to trust, each agent's token and pods, the CSRs."""
        return {
            "url": url,
            "trust_domain": "example.org",
            "bundle_pem": bundle_pem.decode(),
            "csrs": [c.decode() for c in csrs],
            "seconds": seconds,
            "agents": [
                {
                    "token": self.kube.mint_token(self.agent_pods[node]),
                    "pods": [
                        {
                            "namespace": "bench",
                            "name": p["metadata"]["name"],
                            "uid": p["metadata"]["uid"],
                        }
                        for p in self.pods[node]
                    ],
                }
                for node in self.nodes
            ],
        }


async def _agents(job: dict[str, Any], cpu: int | None) -> tuple[float, float]:
    """Run the agents' process on ``cpu`` (any when None): SVIDs per second, and the cores the agents used."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(_AGENTS),
        *([str(cpu)] if cpu is not None else []),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate(json.dumps(job).encode())
    if process.returncode != 0:
        raise RuntimeError(f"the agents' process failed ({process.returncode})")
    done = json.loads(out)
    seconds = float(done["seconds"])
    return float(done["issued"]) / seconds, float(done["cpu_seconds"]) / seconds


def _cpu_seconds(pids: frozenset[int]) -> float:
    """CPU seconds (user and system) the processes ``pids`` have used so far."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


async def _run(
    cluster: _Cluster,
    root: Path,
    *,
    workers: int,
    seconds: float,
    agents_cpu: int | None,
    inprocess: bool,
) -> dict[str, float]:
    kube = cluster.kube
    settings = issuer_settings(
        root / f"data-{workers}-{agents_cpu}",
        kubeconfig=kube.write_kubeconfig(root / f"kubeconfig-{workers}-{agents_cpu}"),
        rate_per_second=1e6,
        rate_burst=1e6,
        ca_options={"signing_workers": workers},
    )
    figures: dict[str, float] = {}
    async with running_issuer(settings) as server:
        ca, kube_parts = server.issuer.ca, server.issuer.kube
        assert kube_parts is not None
        batch = len(cluster.pods[cluster.nodes[0]])
        async with asyncio.timeout(10):
            await kube_parts.pods.wait_for(
                lambda c: all(len(c.pods_on_node(n)) > batch for n in cluster.nodes)
            )
        csrs = [make_csr(generate_key()) for _ in range(batch)]
        if inprocess:
            # The CA's own batch minting in this process, same CSRs, the ID every bench pod gets.
            spiffe_id = ca.trust_domain.trust_domain.spiffe_id("ns", "bench", "sa", "app")
            requests = [X509Request(spiffe_id, csr=c) for c in csrs]
            await ca.mint_x509_svids(requests)
            count, started, cpu = 0, time.perf_counter(), time.process_time()
            while time.perf_counter() - started < seconds:
                count += len(await ca.mint_x509_svids(requests))
            figures["inprocess_per_s"] = count / (time.perf_counter() - started)
            figures["inprocess_cpu_us"] = (time.process_time() - cpu) / count * 1e6
        job = cluster.job(server.url, ca.bundle().to_pem(), csrs, seconds)
        pool = ca.signing_pool
        workers_before = _cpu_seconds(pool.pids if pool is not None else frozenset())
        own_before, started = time.process_time(), time.perf_counter()
        figures["svids_per_s"], figures["agents_cores"] = await _agents(job, agents_cpu)
        elapsed = time.perf_counter() - started
        # How many cores the issuer's own process and its workers kept busy while the agents ran.
        figures["issuer_cores"] = (time.process_time() - own_before) / elapsed
        workers_after = _cpu_seconds(pool.pids if pool is not None else frozenset())
        figures["workers_cores"] = (workers_after - workers_before) / elapsed
        issued = figures["svids_per_s"] * elapsed
        busy = (figures["issuer_cores"] + figures["workers_cores"]) * elapsed
        figures["cpu_us"] = busy / issued * 1e6
        if inprocess:
            # TokenReview: cold (a new token each time) and warm (one token, cached verdict).
            agents_auth = kube_parts.agents
            agent_pod = cluster.agent_pods[cluster.nodes[0]]
            cold_tokens = [kube.mint_token(agent_pod) for _ in range(200)]
            started = time.perf_counter()
            for token in cold_tokens:
                await agents_auth.authenticate(token)
            figures["tokenreview_cold_per_s"] = len(cold_tokens) / (time.perf_counter() - started)
            token, warm = kube.mint_token(agent_pod), 0
            started = time.perf_counter()
            while time.perf_counter() - started < min(seconds, 2):
                await agents_auth.authenticate(token)
                warm += 1
            figures["tokenreview_warm_per_s"] = warm / (time.perf_counter() - started)
    return figures


def _per_svid(figures: dict[str, float], cores: str) -> float:
    """Microseconds of CPU per SVID that the cores in ``figures[cores]`` stand for at its issuance rate."""
    return figures[cores] / figures["svids_per_s"] * 1e6


async def _bench(seconds: float, batch: int, agents: int) -> dict[str, Any]:
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        async with KubeApiServer() as kube:
            cluster = _Cluster(kube, agents, batch)
            # One core: the issuer (this process, its threads) on the first, the agents on another if there is one.
            if len(cpus) > 1:
                os.sched_setaffinity(0, {cpus[0]})
            pinned = await _run(
                cluster,
                root,
                workers=1,
                seconds=seconds,
                agents_cpu=cpus[-1] if len(cpus) > 1 else None,
                inprocess=True,
            )
            if cpus:
                os.sched_setaffinity(0, set(cpus))
            # Every core: signing in process, then in two worker processes.
            spread = {
                workers: await _run(
                    cluster,
                    root,
                    workers=workers,
                    seconds=seconds,
                    agents_cpu=None,
                    inprocess=False,
                )
                for workers in (1, 2)
            }
    return {
        "svids_per_s": round(pinned["svids_per_s"], 1),
        "inprocess_per_s": round(pinned["inprocess_per_s"], 1),
        "ratio": round(pinned["svids_per_s"] / pinned["inprocess_per_s"], 3),
        # CPU per SVID, in process over through the service: what the service adds, however busy the machine was.
        "inprocess_cpu_us": round(pinned["inprocess_cpu_us"], 1),
        "service_cpu_us": round(pinned["cpu_us"], 1),
        "ratio_cpu": round(pinned["inprocess_cpu_us"] / pinned["cpu_us"], 3),
        "batch": batch,
        "agents": agents,
        "cores": len(cpus) or 1,
        "agents_cores": round(pinned["agents_cores"], 2),
        "workers_1_svids_per_s": round(spread[1]["svids_per_s"], 1),
        "workers_2_svids_per_s": round(spread[2]["svids_per_s"], 1),
        "workers_speedup": round(spread[2]["svids_per_s"] / spread[1]["svids_per_s"], 3),
        "workers_1_cpu_us": round(spread[1]["cpu_us"], 1),
        "workers_2_cpu_us": round(spread[2]["cpu_us"], 1),
        # The same split by process: the server's own (HTTP, JSON, authorization, journal) and its workers'.
        "workers_1_server_cpu_us": round(_per_svid(spread[1], "issuer_cores"), 1),
        "workers_2_server_cpu_us": round(_per_svid(spread[2], "issuer_cores"), 1),
        "workers_2_signing_cpu_us": round(_per_svid(spread[2], "workers_cores"), 1),
        "workers_1_issuer_cores": round(spread[1]["issuer_cores"], 2),
        "workers_2_issuer_cores": round(spread[2]["issuer_cores"], 2),
        "workers_2_workers_cores": round(spread[2]["workers_cores"], 2),
        "workers_2_agents_cores": round(spread[2]["agents_cores"], 2),
        "tokenreview_cold_per_s": round(pinned["tokenreview_cold_per_s"], 1),
        "tokenreview_warm_per_s": round(pinned["tokenreview_warm_per_s"], 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds per figure")
    args = parser.parse_args()
    # Every authentication is logged at info; the benchmark measures work, not logging.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    figures = asyncio.run(_bench(3.0 if args.quick else 15.0, batch=100, agents=4))
    figures["quick"] = args.quick
    merge_results(RESULTS / "issue.json", figures)
    for key, value in figures.items():
        print(f"{key:>24}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
