"""The node agent's figures: Workload API latency under 1,000 and 10,000 streams, memory per cached SVID, how
evenly rotation spreads the issuer's load, and what the agent process costs at rest and at start.

1. ``p50_ms``/``p99_ms``: ``FetchX509SVID`` first-response latency (request sent on a connected channel to first
   message) of probe streams opened one at a time while 1,000 other streams are held open (``s10000_*``: the same
   with 10,000 held, opened 100 at a time, full run only; the descriptor limit is raised to the hard limit). The
   client is a separate process (grpclib; one connection per stream, as each workload has its own); the server is
   the real agent stack (``WorkloadApiServer``, the unix attestor with its SO_PEERCRED capture and PID-reuse check,
   ``SvidCache``). SVIDs are pre-cached: the first call issued them from an in-process issuer (real CA signatures,
   no HTTP), so this measures serving, not minting. How long the 1,000 took to open is reported too, connect
   included: ``open_waves_*`` (opened 100 at a time) and ``open_burst_*`` (all 1,000 at once, full run only; on a
   two-core machine client and server share the CPU, so this is mostly queueing behind pure-Python HTTP/2
   handshakes). ``server_cpu_ms_per_probe`` and ``client_cpu_ms_per_probe``: each side's CPU time over the probe
   loop alone (each probe's connect, call and close), per probe; on a shared machine they move less than the
   percentiles do. The figures above are grpclib's (``p99_ms`` is the one the bar is read from). ``go_p50_ms``/
   ``go_p99_ms`` (1,000 held, full run only) are the same method with go-spiffe on grpc-go as the client, as most
   workloads run it (tools/spiffe-peer ``latency -per-connection``: one connection per held stream, each probe on a
   connection already dialled). One difference is grpc-go's: its dial returns only once the server's HTTP/2
   SETTINGS have arrived, so the server's work at accept is done before a go probe starts, while a grpclib probe's
   request is sent as soon as the socket connects and may queue behind it; ``go_dial_p50_ms``/``go_dial_p99_ms``
   time that dial, and ``go_server_cpu_ms_per_probe``/``go_client_cpu_ms_per_probe`` are the CPU times as above.
   ``uvloop_*`` (full run only): the grpclib figures again with the agent's optional loop (``agent.event_loop:
   uvloop``), the server in a process of its own; ``uvloop_server_cpu_over_asyncio`` compares its server CPU per
   probe with the default loop's in the same run.
2. ``rss_mb_per_1000``: resident-set growth of a fresh process, per 1,000, while the real cache takes N more
   distinct workloads (10,000; 2,000 with ``--quick``), each with its own key and SVID issued by the in-process
   issuer, once it already holds 1,000: the cost of one more cached SVID, without what the first ones pay once
   (the worker threads' stacks and arenas, the first allocator pools). ``rss_mb_per_1000_from_empty`` counts from
   the first workload, as this benchmark did before; it is the higher, and converges to the first as N grows.
3. ``rotation_peak_over_mean``: 10,000 SVIDs with a one-minute TTL, all issued in the same instant (the worst case,
   an agent restart), rotated by the real scheduler on an injected clock for five simulated minutes (``--quick``:
   5,000 SVIDs for 100 s; with half the requests per second, chance moves the busiest second more, so the quick
   figure reads higher: 1.29 against 1.18 for 10,000 over the same 100 s, same seed). Issuance requests (SVIDs asked for) are counted per simulated second from the first rotation on;
   the figure is the busiest second over the mean. Keys and CSRs are real; the issuer answers with a pre-built chain (signing is not measured).
4. ``idle_rss_mb``: the resident set of a real ``sigil-agent run`` process (started as an operator does, against a
   real ``sigil-server``, bench/_stacks.py) once it serves and nothing calls it; the baseline in the same run,
   ``floor_rss_mb``, is a Python process that has imported only what any Python agent of this design needs
   (asyncio with ssl, ``cryptography``'s X.509, grpclib's server with protobuf, and h11; bench/_agent_process.py
   says why it no longer holds aiohttp), so ``idle_over_floor`` says what Sigil adds.
5. ``import_cli_s``: the median time to import ``sigil.node_agent.cli`` in a fresh interpreter (what
   ``sigil-agent healthcheck`` and ``--help`` pay), ``import_agent_s`` the same for ``sigil.node_agent.agent`` (what
   ``run`` pays before it serves), against ``interpreter_s``, a fresh interpreter importing nothing.

Writes bench/results/agent.json. ``--quick`` finishes in under a minute (38-42 s on a loaded two-core machine):
it leaves out the 10,000-stream, burst, uvloop and go-spiffe figures, caches 2,000 SVIDs for 2., rotates 5,000 for
3. (below) and times each import three times; the full run measures everything as described. ``--only idle`` measures 4. alone (a few
seconds; the figures are merged into the same file), for work on the agent's memory.

    python bench/agent.py [--quick] [--only idle]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from cryptography import x509

from sigil.ca.authority import Signer, new_x509_authority
from sigil.ca.bundle import TrustBundle
from sigil.ca.csr import parse_csr
from sigil.ca.keys import generate_key
from sigil.ca.spiffe_id import SpiffeId, TrustDomain
from sigil.ca.x509svid import mint_x509_svid
from sigil.issuer.client import (
    AgentSvid,
    BundleUpdate,
    IssuedJwtSvid,
    IssuedX509Svid,
    X509SvidRequest,
    X509SvidResult,
)
from sigil.node_agent.attestation.attestors.unix import UnixAttestor
from sigil.node_agent.attestation.caller import Attestation
from sigil.node_agent.attestation.peer import PeerCredentials
from sigil.node_agent.attestation.selectors import Selector, WorkloadAttestation
from sigil.node_agent.settings import RotationSettings
from sigil.node_agent.svid_cache.cache import SvidCache
from sigil.node_agent.workload_api.endpoint import WorkloadApiServer, WorkloadApiSettings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from _agent_process import idle_rss, import_times
from _results import merge_results  # bench/ is the script's own directory

RESULTS = Path(__file__).parent / "results" / "agent.json"
TD = TrustDomain("example.org")


class _Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


class BenchIssuer:
    """An in-process issuer speaking the agent's IssuerApi: real signatures, or a pre-built chain (``fast``)."""

    def __init__(self, clock: _Clock, *, ttl: timedelta, fast: bool) -> None:
        key = generate_key()
        self._signer = Signer(new_x509_authority(TD, key, now=clock(), ttl=timedelta(days=2)), key)
        self._clock = clock
        self._ttl = ttl
        self._fast = fast
        self._chain: tuple[x509.Certificate, ...] | None = None
        self._signers: frozenset[str] = frozenset()
        self.per_second: Counter[int] = Counter()
        self.requested = 0
        self.epoch = clock()
        certificate = self._signer.authority.certificate
        assert certificate is not None
        self.bundle_value = TrustBundle(TD, x509_authorities=(certificate,))

    agent_svid: AgentSvid | None = None

    @property
    def trust_bundle(self) -> TrustBundle:
        return self.bundle_value

    async def set_agent_svid(self, agent_svid: AgentSvid | None) -> None:
        self.agent_svid = agent_svid

    async def attest_k8s(self, token: str, cluster: str, *, key: Any = None) -> AgentSvid:
        raise NotImplementedError

    async def attest_join_token(self, token: str, *, key: Any = None) -> AgentSvid:
        raise NotImplementedError

    async def renew(self, *, key: Any = None) -> AgentSvid:
        raise NotImplementedError

    async def jwt_svid(self, **kwargs: Any) -> list[IssuedJwtSvid]:
        raise NotImplementedError

    async def bundle(self, after_sequence: int | None = None, **kwargs: Any) -> BundleUpdate:
        return BundleUpdate(TD, 1, "r1", self.bundle_value, {}, frozenset())

    def _one(self, request: X509SvidRequest) -> X509SvidResult:
        now = self._clock()
        spiffe_id = SpiffeId.parse(f"spiffe://example.org/{request.selectors[0].replace(':', '/')}")
        if self._fast and self._chain is not None:
            svid = IssuedX509Svid(spiffe_id, self._chain, now + self._ttl, self._signers)
            return X509SvidResult(svids=(svid,))
        _, public_key = parse_csr(request.csr)
        svid = mint_x509_svid(
            self._signer, spiffe_id=spiffe_id, public_key=public_key, ttl=self._ttl, now=now
        )
        self._chain, self._signers = svid.chain, frozenset({svid.authority_id})
        issued = IssuedX509Svid(spiffe_id, svid.chain, svid.not_after, self._signers)
        return X509SvidResult(svids=(issued,))

    async def batch_x509_svids(self, requests: Sequence[X509SvidRequest]) -> list[X509SvidResult]:
        second = int((self._clock() - self.epoch).total_seconds())
        self.per_second[second] += len(requests)
        self.requested += len(requests)
        if self._fast and self._chain is not None:
            return [self._one(r) for r in requests]
        return await asyncio.to_thread(lambda: [self._one(r) for r in requests])


def _workload(n: int) -> WorkloadAttestation:
    peer = PeerCredentials(pid=os.getpid(), uid=n, gid=n, start_time=0)
    return WorkloadAttestation(peer, frozenset({Selector("unix", f"uid:{n}")}))


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


# ---------------------------------------------------------------------------------------------- 2. memory


async def rss_per_1000(count: int) -> dict[str, float]:
    clock = _Clock()
    issuer = BenchIssuer(clock, ttl=timedelta(hours=1), fast=False)
    manager = SvidCache(issuer, clock=clock, rng=random.Random(1))  # noqa: S311 -- bench jitter
    await manager.start(background=False)
    await manager.x509_svids(_workload(0))  # warm up imports, pools and the first allocations
    gc.collect()
    marks = [_rss_kb()]
    warm = 1000
    for first, last in ((1, warm), (warm + 1, warm + count)):
        for start in range(first, last + 1, 500):
            batch = range(start, min(start + 500, last + 1))
            await asyncio.gather(*(manager.x509_svids(_workload(n)) for n in batch))
        gc.collect()
        marks.append(_rss_kb())
    assert manager.cached_workloads == warm + count + 1
    await manager.aclose()
    return {
        "rss_mb_per_1000": (marks[2] - marks[1]) / 1024 / (count / 1000),
        "rss_mb_per_1000_from_empty": (marks[2] - marks[0]) / 1024 / ((warm + count) / 1000),
    }


# ---------------------------------------------------------------------------------------------- 3. rotation


async def rotation_profile(count: int, duration: timedelta) -> dict[str, float]:
    clock = _Clock()
    issuer = BenchIssuer(clock, ttl=timedelta(minutes=1), fast=True)
    settings = RotationSettings(idle_timeout=timedelta(days=1))
    manager = SvidCache(issuer, settings=settings, clock=clock, rng=random.Random(2))  # noqa: S311 -- bench
    await manager.start(background=False)
    await manager.x509_svids(_workload(0))
    await asyncio.gather(*(manager.x509_svids(_workload(n)) for n in range(1, count)))
    issuer.per_second.clear()
    end = issuer.epoch + duration
    while True:
        wake = manager.next_wakeup()
        if wake is None or wake > end:
            break
        clock.now = max(clock.now, wake)
        await manager.run_due()
    await manager.aclose()
    seconds = sorted(issuer.per_second)
    first, last = seconds[0], int((end - issuer.epoch).total_seconds())
    buckets = [issuer.per_second.get(s, 0) for s in range(first, last)]
    mean = statistics.fmean(buckets)
    return {
        "rotation_peak_over_mean": max(buckets) / mean,
        "rotation_mean_per_s": mean,
        "rotation_peak_per_s": float(max(buckets)),
        "rotation_simulated_s": float(last - first),
    }


# ---------------------------------------------------------------------------------------------- 1. latency


async def _client(socket_path: str, streams: int, wave: int, probes: int) -> dict[str, list[float]]:
    """Runs in the child process: hold ``streams`` streams (opened in waves of ``wave``), then probe.

    Returns the first-answer latency of each held stream (connect included) and of each probe: a stream opened
    on an already-connected channel while all the others are held, one probe at a time.
    """
    from grpclib.client import Channel
    from grpclib.const import Cardinality

    from sigil.node_agent._proto import workload_pb2 as pb

    hold = asyncio.Event()
    opened: list[float] = []
    channels: list[Channel] = []

    async def first_answer(channel: Channel, ready: asyncio.Event | None) -> float:
        started = time.perf_counter()
        async with channel.request(
            "/SpiffeWorkloadAPI/FetchX509SVID",
            Cardinality.UNARY_STREAM,
            pb.X509SVIDRequest,
            pb.X509SVIDResponse,
            metadata={"workload.spiffe.io": "true"},
        ) as stream:
            await stream.send_message(pb.X509SVIDRequest(), end=True)
            response = await stream.recv_message()
            elapsed = (time.perf_counter() - started) * 1000
            assert response is not None
            assert response.svids
            if ready is not None:
                opened.append(elapsed)
                ready.set()
                await hold.wait()
            await stream.cancel()
        return elapsed

    async def held(ready: asyncio.Event) -> None:
        channel = Channel(path=socket_path)
        channels.append(channel)
        await first_answer(channel, ready)

    tasks = []
    for start in range(0, streams, wave):
        events = [asyncio.Event() for _ in range(min(wave, streams - start))]
        tasks += [asyncio.create_task(held(e)) for e in events]
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), timeout=120)
    probed: list[float] = []
    # The parent reads its own CPU time between these two lines: the server's cost of the probes alone.
    print("probing", flush=True)
    cpu = time.process_time()
    for _ in range(probes):
        channel = Channel(path=socket_path)
        await channel.__connect__()
        probed.append(await first_answer(channel, None))
        channel.close()
    cpu_ms = (time.process_time() - cpu) * 1000
    print("probed", flush=True)
    hold.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    for channel in channels:
        channel.close()
    return {"opened": opened, "probed": probed, "cpu_ms": [cpu_ms]}


def _spiffe_peer() -> str:
    """Our go-spiffe program (tools/spiffe-peer), built once by tools/build into its cache."""
    build = Path(__file__).resolve().parent.parent / "tools" / "build"
    done = subprocess.run([build, "spiffe-peer"], stdout=subprocess.PIPE, text=True, check=True)  # noqa: S603
    return done.stdout.strip()


async def _go_client(
    socket_path: Path, streams: int, probes: int, *, prefix: str
) -> dict[str, float]:
    """The probe figures with go-spiffe (grpc-go) as the client, by the same method (``latency -per-connection``)."""
    child = await asyncio.create_subprocess_exec(
        await asyncio.to_thread(_spiffe_peer),
        "latency",
        f"-addr=unix://{socket_path}",
        "-per-connection",
        f"-streams={streams}",
        f"-samples={probes}",
        "-wave=100",
        "-timeout=300s",
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdout is not None
    line = await child.stdout.readline()
    assert json.loads(line) == {"probing": True}, line
    cpu = time.process_time()
    measured = json.loads(await child.stdout.readline())
    server_cpu_ms = (time.process_time() - cpu) * 1000
    await child.communicate()
    assert child.returncode == 0, f"spiffe-peer latency exited {child.returncode}"
    return {
        f"{prefix}go_p50_ms": measured["p50_ms"],
        f"{prefix}go_p99_ms": measured["p99_ms"],
        f"{prefix}go_dial_p50_ms": measured["dial_p50_ms"],
        f"{prefix}go_dial_p99_ms": measured["dial_p99_ms"],
        f"{prefix}go_server_cpu_ms_per_probe": server_cpu_ms / probes,
        f"{prefix}go_client_cpu_ms_per_probe": measured["cpu_ms_per_probe"],
    }


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _raise_fd_limit() -> None:
    """Up to the hard limit: each held stream is one connection, so one descriptor on each side."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def latency(
    streams: int, probes: int, *, burst: bool = True, go: bool = False, prefix: str = ""
) -> dict[str, float]:
    """Figures with ``streams`` held (keys prefixed with ``prefix``); ``burst`` also opens them all at once, ``go``
    measures again with go-spiffe as the client (``go_*``)."""
    clock = _Clock()
    issuer = BenchIssuer(clock, ttl=timedelta(hours=1), fast=False)
    manager = SvidCache(issuer, clock=clock, rng=random.Random(3))  # noqa: S311 -- bench jitter
    await manager.start(background=False)
    directory = Path(tempfile.mkdtemp(dir="/tmp", prefix="sgb-"))
    settings = WorkloadApiSettings(socket_path=directory / "agent.sock")
    me = WorkloadAttestation(
        PeerCredentials(os.getpid(), os.getuid(), os.getgid(), 0),
        await UnixAttestor().attest(PeerCredentials(os.getpid(), os.getuid(), os.getgid(), 0)),
    )
    await manager.x509_svids(
        me
    )  # pre-cache: the client process has the same uid, so the same selectors
    figures: dict[str, float] = {}
    async with WorkloadApiServer(settings, source=manager, attestor=Attestation([UnixAttestor()])):
        for label, wave in (("waves", 100), ("burst", streams))[: 2 if burst else 1]:
            child = await asyncio.create_subprocess_exec(
                sys.executable,
                __file__,
                "--client",
                str(settings.socket_path),
                str(streams),
                str(wave),
                str(probes),
                stdout=asyncio.subprocess.PIPE,
            )
            assert child.stdout is not None
            assert await child.stdout.readline() == b"probing\n"
            cpu = time.process_time()
            assert await child.stdout.readline() == b"probed\n"
            server_cpu_ms = (time.process_time() - cpu) * 1000
            out, _ = await child.communicate()
            measured = json.loads(out)
            assert len(measured["opened"]) == streams
            figures[f"{prefix}open_{label}_p50_ms"] = _percentile(measured["opened"], 0.50)
            figures[f"{prefix}open_{label}_p99_ms"] = _percentile(measured["opened"], 0.99)
            if label == "waves":
                figures[f"{prefix}p50_ms"] = _percentile(measured["probed"], 0.50)
                figures[f"{prefix}p99_ms"] = _percentile(measured["probed"], 0.99)
                figures[f"{prefix}server_cpu_ms_per_probe"] = server_cpu_ms / probes
                figures[f"{prefix}client_cpu_ms_per_probe"] = measured["cpu_ms"][0] / probes
        if go:
            figures.update(await _go_client(settings.socket_path, streams, probes, prefix=prefix))
    await manager.aclose()
    assert issuer.requested == 1, "every stream was served from the cache"
    return figures


async def main(quick: bool) -> dict[str, Any]:
    started = time.perf_counter()
    results: dict[str, Any] = {"quick": quick, "streams": 1000}
    _raise_fd_limit()
    # --quick leaves out opening all 1,000 at once (seconds of handshakes) and the go-spiffe client (as many
    # again): neither has a bar.
    results.update(await latency(1000, 100 if quick else 500, burst=not quick, go=not quick))
    if not quick:
        results.update(await latency(10000, 500, burst=False, prefix="s10000_"))
        # The same probes with the server on uvloop (agent.event_loop: uvloop), in a process of its own.
        child = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--uvloop", "500", stdout=asyncio.subprocess.PIPE
        )
        out, _ = await child.communicate()
        results.update(json.loads(out))
        results["uvloop_server_cpu_over_asyncio"] = (
            results["uvloop_server_cpu_ms_per_probe"] / results["server_cpu_ms_per_probe"]
        )
    cached = 2000 if quick else 10000
    # A fresh process: memory freed by the latency run would otherwise be reused and hide the growth.
    child = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--rss", str(cached), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await child.communicate()
    results.update(json.loads(out))
    results["rss_cached_svids"] = cached
    # --quick: half the SVIDs (most of this figure's time is their keys and CSRs), over 100 simulated seconds.
    rotated = 5000 if quick else 10000
    results.update(await rotation_profile(rotated, timedelta(seconds=100 if quick else 300)))
    results["rotation_svids"] = rotated
    results.update(await idle_rss())
    results.update(import_times(3 if quick else 15))
    results["seconds"] = time.perf_counter() - started
    results["bars"] = {
        "p99_ms_under_2": results["p99_ms"] < 2,
        "rotation_peak_over_mean_under_1_5": results["rotation_peak_over_mean"] < 1.5,
        "rss_mb_per_1000_at_most_2_5": results["rss_mb_per_1000"] <= 2.5,
        "idle_rss_mb_at_most_40": results["idle_rss_mb"] <= 40,
        "import_cli_s_at_most_0_25": results["import_cli_s"] <= 0.25,
    }
    if "uvloop_p99_ms" in results:
        # The loop the shipped deployment runs (deploy/kustomize/base/agent-config.yaml), full run only.
        results["bars"]["uvloop_p99_ms_under_2"] = results["uvloop_p99_ms"] < 2
    return results


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--client":
        _raise_fd_limit()
        counts = [int(a) for a in sys.argv[3:]]
        figures = asyncio.run(_client(sys.argv[2], counts[0], counts[1], counts[2]))
        print(json.dumps(figures))
        sys.exit(0)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    if len(sys.argv) == 3 and sys.argv[1] == "--uvloop":
        import uvloop

        _raise_fd_limit()
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            probes = int(sys.argv[2])
            figures = runner.run(latency(1000, probes, burst=False, prefix="uvloop_"))
        print(json.dumps(figures))
        sys.exit(0)
    if len(sys.argv) == 3 and sys.argv[1] == "--rss":
        print(json.dumps(asyncio.run(rss_per_1000(int(sys.argv[2])))))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs, under a minute")
    parser.add_argument(
        "--only", choices=["idle"], help="measure only the idle agent's memory (4.)"
    )
    args = parser.parse_args()
    figures = asyncio.run(idle_rss()) if args.only == "idle" else asyncio.run(main(args.quick))
    merge_results(RESULTS, figures)
    print(json.dumps(figures, indent=2))
