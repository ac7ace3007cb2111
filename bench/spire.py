"""Sigil and SPIRE side by side on this machine, in one run, each at its embedded defaults, with the same clients.

Why: a user choosing Sigil wants to know how it compares with the reference implementation. Both run as their own
processes (sigil-server + sigil-agent; spire-server with SQLite + spire-agent with a join token and the ``unix``
workload attestor), with no setting tuned: SPIRE's configuration is the minimum it needs to run (addresses, paths,
the ``sql``/sqlite3, ``disk`` key manager, ``join_token`` and ``unix`` plugins; tests/sigil_testing/spire.py).

- issuance through the server: X509-SVIDs per second from ready CSRs. SPIRE: ``svid.v1.SVID/MintX509SVID`` over its
  admin socket from our Go client (tools/spiffe-peer ``mint``, 32 calls in flight). Sigil: the agent API's batched
  issuance (batches of 100, 4 in flight) from an attested agent's client in this process;
- FetchX509SVID first-response latency p50/p99 with 1,000 streams held open, both agents with the SVID cached,
  measured by the same go-spiffe program (``latency``);
- time to first SVID for a new workload: from the entry's creation returning to the go-spiffe program holding a
  verified SVID (a new gid per trial is a new workload; SPIRE's agent learns entries on its 5 s sync);
- agent memory (RSS growth) per 1,000 cached SVIDs: a new workload entitled to 1,000 entries fetches them all.

Each ratio is Sigil's advantage: above 1 Sigil is ahead (rates: sigil/spire; times and memory: spire/sigil).
Writes bench/results/spire.json. ``--quick`` finishes in under a minute. Run as root (the trials switch gid).

    python bench/spire.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from _results import RESULTS, merge_results
from _stacks import SigilStack, cpu_seconds, latency, rss_kib, seconds_until_svids
from sigil_testing.paths import short_directory
from sigil_testing.peers import PeerTools, build_peer_tools
from sigil_testing.spire import SpireAgent, SpireServer

from sigil.ca.bundle import TrustBundle
from sigil.ca.keys import generate_key
from sigil.ca.spiffe_id import TrustDomain
from sigil.issuer.admin.client import SocketAdmin
from sigil.issuer.client import IssuerClient, X509SvidRequest, make_csr

OUT = RESULTS / "spire.json"
UID = os.getuid()
NODE = "spiffe://spire.test/node"
SETTINGS = "SPIRE v1.13.3 defaults (log_level INFO): sql/sqlite3, disk key manager, join_token, unix; Sigil embedded defaults"


def _selectors(gid: int) -> list[str]:
    """This uid with ``gid``: the benchmark's own workload is gid 0, each new one another gid."""
    return [f"unix:uid:{UID}", f"unix:gid:{gid}"]


class Bench:
    """Both stacks running, and the figures as they are measured."""

    def __init__(
        self, tools: PeerTools, spire: SpireServer, agent: SpireAgent, sigil: SigilStack
    ) -> None:
        self.tools = tools
        self.spire = spire
        self.spire_agent = agent
        self.sigil = sigil
        self.admin: SocketAdmin
        self.sigil_agent_id = ""

    async def issuance(self, count: int) -> dict[str, Any]:
        """SVIDs per second from ready CSRs: SPIRE's MintX509SVID against Sigil's batched agent API."""
        mint = [str(self.tools.spiffe_peer), "mint", f"-socket={self.spire.socket}"]
        mint += ["-trust-domain=spire.test", f"-count={count}", "-concurrency=32"]
        spire_cpu = cpu_seconds(self.spire.pid)
        done = await asyncio.to_thread(
            subprocess.run,
            mint,
            capture_output=True,
            text=True,
            check=True,
        )
        minted = json.loads(done.stdout)
        spire_rate = float(minted["svids_per_second"])
        spire_busy = (cpu_seconds(self.spire.pid) - spire_cpu) / float(minted["seconds"])
        token = await self.admin.generate_token(600)
        selectors = ["unix:uid:4242"]
        await self.admin.create_entry(
            "spiffe://example.org/bench/issued", token["agent_id"], selectors, []
        )
        bundle = TrustBundle.parse_pem(TrustDomain("example.org"), await self.admin.bundle("pem"))
        batch = [
            X509SvidRequest(make_csr(generate_key()), selectors=tuple(selectors))
            for _ in range(100)
        ]
        async with IssuerClient(self.sigil.url, bundle=bundle) as client:
            await client.attest_join_token(token["token"])
            await client.batch_x509_svids(batch)  # warm-up, as the Go client's first call
            left, issued = count // 100, 0

            async def worker() -> None:
                nonlocal left, issued
                while left > 0:
                    left -= 1
                    issued += sum(len(r.svids) for r in await client.batch_x509_svids(batch))

            started, sigil_cpu = time.perf_counter(), cpu_seconds(self.sigil.server_pid)
            await asyncio.gather(*(worker() for _ in range(4)))
            elapsed = time.perf_counter() - started
            sigil_rate = issued / elapsed
            sigil_busy = (cpu_seconds(self.sigil.server_pid) - sigil_cpu) / elapsed
        return {
            "svids": count,
            "spire_per_s": round(spire_rate, 1),
            "sigil_per_s": round(sigil_rate, 1),
            "ratio": round(sigil_rate / spire_rate, 3),
            # CPU seconds per second of each server while it issued (2.0 = both cores busy).
            "spire_server_cores": round(spire_busy, 2),
            "sigil_server_cores": round(sigil_busy, 2),
        }

    async def fetch_latency(self, samples: int) -> dict[str, Any]:
        """FetchX509SVID first response with 1,000 streams open, the same go-spiffe program on each agent."""
        spire = await asyncio.to_thread(latency, self.tools, self.spire_agent.address, samples)
        sigil = await asyncio.to_thread(latency, self.tools, self.sigil.address, samples)
        return {
            "samples": samples,
            "spire_p50_ms": round(spire["p50_ms"], 2),
            "spire_p99_ms": round(spire["p99_ms"], 2),
            "sigil_p50_ms": round(sigil["p50_ms"], 2),
            "sigil_p99_ms": round(sigil["p99_ms"], 2),
            "ratio_p50": round(spire["p50_ms"] / sigil["p50_ms"], 3),
            "ratio_p99": round(spire["p99_ms"] / sigil["p99_ms"], 3),
        }

    async def time_to_first_svid(self, trials: int) -> dict[str, Any]:
        """From an entry for a new workload to that workload holding its SVID, ``trials`` times each."""
        spire: list[float] = []
        sigil: list[float] = []
        for trial in range(trials):
            gid = 70000 + trial
            spiffe_id = f"spiffe://spire.test/new/{trial}"
            await asyncio.to_thread(
                self.spire.create_entry, spiffe_id, parent_id=NODE, selectors=_selectors(gid)
            )
            spire.append(
                await asyncio.to_thread(
                    seconds_until_svids, self.tools, self.spire_agent.address, gid
                )
            )
            spiffe_id = f"spiffe://example.org/new/{trial}"
            await self.admin.create_entry(spiffe_id, self.sigil_agent_id, _selectors(gid), [])
            sigil.append(
                await asyncio.to_thread(seconds_until_svids, self.tools, self.sigil.address, gid)
            )
        return {
            "trials": trials,
            "spire_median_s": round(statistics.median(spire), 3),
            "sigil_median_s": round(statistics.median(sigil), 3),
            "ratio": round(statistics.median(spire) / statistics.median(sigil), 3),
        }

    async def memory(self, cached: int = 1000) -> dict[str, Any]:
        """RSS growth of each agent while a new workload (gid 79999) gets SVIDs for ``cached`` entries."""
        selectors = _selectors(79999)
        spire_before, sigil_before = rss_kib(self.spire_agent.pid), rss_kib(self.sigil.agent_pid)
        entries = [
            {
                "spiffe_id": f"spiffe://spire.test/cached/{i}",
                "parent_id": NODE,
                "selectors": [{"type": "unix", "value": s.partition(":")[2]} for s in selectors],
            }
            for i in range(cached)
        ]
        data = self.spire.directory / "entries.json"
        data.write_text(json.dumps({"entries": entries}))
        await asyncio.to_thread(self.spire.cli, "entry create", "-data", str(data))
        for i in range(cached):
            await self.admin.create_entry(
                f"spiffe://example.org/cached/{i}", self.sigil_agent_id, selectors, []
            )
        for address in (self.spire_agent.address, self.sigil.address):
            await asyncio.to_thread(seconds_until_svids, self.tools, address, 79999, svids=cached)
        spire_after, sigil_after = rss_kib(self.spire_agent.pid), rss_kib(self.sigil.agent_pid)
        spire = (spire_after - spire_before) / 1024 * 1000 / cached
        sigil = (sigil_after - sigil_before) / 1024 * 1000 / cached
        return {
            "spire_mib": round(spire, 2),
            "sigil_mib": round(sigil, 2),
            "spire_rss_mib": round(spire_after / 1024, 1),
            "sigil_rss_mib": round(sigil_after / 1024, 1),
            "ratio": round(spire / sigil, 3) if sigil > 0 else None,
        }


async def run(quick: bool) -> dict[str, Any]:
    """Start both stacks, measure each figure in turn, stop both."""
    tools = build_peer_tools()
    count, samples, trials = (1000, 100, 2) if quick else (20000, 500, 10)
    figures: dict[str, Any] = {"quick": quick, "settings": SETTINGS}
    with short_directory("sb-") as root:
        spire = SpireServer(root / "spire", tools=tools)
        await asyncio.to_thread(spire.start)
        sigil = SigilStack(root / "sigil")
        agent = None
        try:
            token = await asyncio.to_thread(spire.join_token, NODE)
            await asyncio.to_thread(
                spire.create_entry,
                "spiffe://spire.test/bench",
                parent_id=NODE,
                selectors=_selectors(0),
            )
            agent = SpireAgent(root / "spire-agent", tools=tools, server=spire, join_token=token)
            await asyncio.to_thread(agent.start)
            bench = Bench(tools, spire, agent, sigil)
            bench.admin, bench.sigil_agent_id = await sigil.start()
            async with bench.admin:
                await bench.admin.create_entry(
                    "spiffe://example.org/bench", bench.sigil_agent_id, _selectors(0), []
                )
                for address in (agent.address, sigil.address):
                    await asyncio.to_thread(seconds_until_svids, tools, address)
                for name, figure in [
                    ("issuance", bench.issuance(count)),
                    ("fetch_latency_1000_streams", bench.fetch_latency(samples)),
                    ("time_to_first_svid", bench.time_to_first_svid(trials)),
                    ("agent_memory_per_1000_svids", bench.memory()),
                ]:
                    figures[name] = await figure
                    print(f"{name}: {figures[name]}", flush=True)
        finally:
            sigil.stop()
            if agent is not None:
                await asyncio.to_thread(agent.stop)
            await asyncio.to_thread(spire.stop)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer SVIDs, samples and trials (< 1 minute)"
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        print(
            "bench/spire.py: run it as root: each new workload is a process with a gid of its own",
            file=sys.stderr,
        )
        return 2
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    figures = asyncio.run(run(args.quick))
    merge_results(OUT, figures)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
