"""What a Sigil decision costs at Envoy: mTLS connections per second with and without the ext_authz filter.

One real Envoy on loopback has two mTLS listeners in front of the same echo server: one plain (``tcp_proxy``
only), one with the network ``ext_authz`` filter asking a real ``sigil-enforcer ext-authz`` process over a Unix
socket. Each connection is a full handshake with a client SVID, one line echoed, and a close; the two listeners
are measured in alternating rounds of the same run, so that the ratio (with / without) is the cost of a Sigil
decision as Envoy's users see it. Also the latency of ``Authorization/Check`` itself (p50/p99), called
sequentially over the same socket. The ext-authz server logs each decision at info, as it does in production.

Then the time from a forced rotation to Envoy presenting the new certificate over the agent's SDS (p50/p99), against
the same rotation reaching a SPIFFE-aware workload through the Workload API in the same run
(``bench/_envoy_rotation.py``).

    python bench/through_envoy.py            # about a minute of measurement
    python bench/through_envoy.py --quick    # well under a minute in all

Writes ``bench/results/envoy.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import platform
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

# Named through_envoy.py, not envoy.py: a script of that name in bench/ would shadow xds-protos' ``envoy`` package
# for every benchmark that imports the agent. The tests' helpers join the path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from _envoy_rotation import measure_rotation
from _results import merge_results
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest, CheckResponse
from grpclib.client import Channel, UnaryUnaryMethod
from sigil_testing.envoy import run_envoy
from sigil_testing.envoy_authz import (
    SvidFiles,
    bootstrap,
    local_cluster,
    network_filters,
    running_ext_authz,
    tls_listener,
)
from sigil_testing.network import free_ports
from sigil_testing.pki import Domain, write_svid_files

from sigil.enforcer.extauthz.service import CHECK_PATH

RESULTS = Path(__file__).parent / "results" / "envoy.json"
CONCURRENCY = 8
_POLICY = """\
apiVersion: authz.sigil.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: callers, namespace: shop}
spec:
  targetRefs: [{group: "", kind: Pod, selector: {matchLabels: {app: api}}}]
  action: ALLOW
  enforcementLevel: Network
  rules: [{sources: [{type: SPIFFE, spiffe: "spiffe://example.org/web"}]}]
"""
# The application behind Envoy: a line-echo server in its own process, so it takes no time from the clients.
_ECHO = """
import asyncio, sys
async def echo(reader, writer):
    writer.write(await reader.readline())
    await writer.drain()
    writer.close()
async def main():
    server = await asyncio.start_server(echo, "127.0.0.1", int(sys.argv[1]))
    await server.serve_forever()
asyncio.run(main())
"""


@contextlib.asynccontextmanager
async def _echo_process(port: int) -> AsyncIterator[None]:
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", _ECHO, str(port))
    try:
        for _ in range(100):
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            await asyncio.sleep(0.05)
        yield
    finally:
        process.terminate()
        await process.wait()


def _client_context(directory: Path, home: Domain) -> ssl.SSLContext:
    chain, key, bundle = write_svid_files(directory, home.mint("web"), home)
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(bundle))
    context.check_hostname = False  # Envoy's SVID names a SPIFFE ID, not a host
    context.load_cert_chain(chain, key)
    return context


async def _connections(port: int, context: ssl.SSLContext, seconds: float) -> int:
    """Connections completed (handshake, one echoed line, close) by CONCURRENCY clients in ``seconds``."""
    deadline = time.perf_counter() + seconds
    done = 0

    async def client() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
            writer.write(b"ping\n")
            answer = await reader.readline()
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()
            assert answer == b"ping\n", "the allowed caller was refused"
            done += 1

    await asyncio.gather(*(client() for _ in range(CONCURRENCY)))
    return done


async def _check_latencies(socket: Path, calls: int) -> list[float]:
    """Seconds per ``Check`` of an allowed peer, called one after another."""
    request = CheckRequest()
    request.attributes.source.principal = "spiffe://example.org/web"
    request.attributes.destination.address.socket_address.port_value = 8443
    channel = Channel(path=str(socket))
    check = UnaryUnaryMethod(channel, CHECK_PATH, CheckRequest, CheckResponse)
    try:
        for _ in range(20):  # warm the connection
            await check(request)
        latencies = []
        for _ in range(calls):
            start = time.perf_counter()
            response = await check(request)
            latencies.append(time.perf_counter() - start)
            assert response.status.code == 0
    finally:
        channel.close()
    return latencies


async def _bench(rounds: int, seconds: float, calls: int) -> dict[str, Any]:
    home = Domain("example.org", now=datetime.now(UTC))
    with tempfile.TemporaryDirectory(prefix="sg-", dir="/tmp") as tmp:
        root = Path(tmp)
        (root / "policies").mkdir()
        (root / "policies" / "p.yaml").write_text(_POLICY)
        files = SvidFiles(*write_svid_files(root / "envoy", home.mint("api"), home))
        client = _client_context(root / "client", home)
        plain, guarded, echo = free_ports(3)
        socket = root / "authz.sock"
        arguments = [
            "--policies", str(root / "policies"),
            "--namespace", "shop",
            "--labels", "app=api",
            "--trust-domain", "example.org",
        ]  # fmt: skip
        config = bootstrap(
            [
                tls_listener("plain", plain, network_filters("echo", ext_authz=False), files),
                tls_listener("guarded", guarded, network_filters("echo"), files),
            ],
            [local_cluster("echo", echo)],
            authz_socket=socket,
        )
        async with (
            _echo_process(echo),
            running_ext_authz(socket, root / "authz.log", arguments),
            run_envoy(config, root, log_level="warning") as envoy,
        ):
            without = with_filter = 0
            await _connections(guarded, client, 0.5)  # warm both paths
            await _connections(plain, client, 0.5)
            for _ in range(rounds):
                without += await _connections(plain, client, seconds)
                with_filter += await _connections(guarded, client, seconds)
            stats = await envoy.stats(r"ext_authz\.sigil\.")
            latencies = await _check_latencies(socket, calls)
    assert stats.get("ext_authz.sigil.denied", 0) == 0
    total = rounds * seconds
    cuts = statistics.quantiles(latencies, n=100)
    return {
        "connections_per_second_without_ext_authz": round(without / total, 1),
        "connections_per_second_with_ext_authz": round(with_filter / total, 1),
        "ext_authz_ratio": round(with_filter / without, 3),
        "ext_authz_checks_seen_by_envoy": stats.get("ext_authz.sigil.ok", 0),
        "check_p50_ms": round(cuts[49] * 1000, 3),
        "check_p99_ms": round(cuts[98] * 1000, 3),
        "check_calls": calls,
        "concurrency": CONCURRENCY,
        "seconds_per_listener": total,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="well under a minute in all")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    rounds, seconds, calls = (2, 3.0, 500) if args.quick else (5, 6.0, 3000)
    figures: dict[str, Any] = asyncio.run(_bench(rounds, seconds, calls))
    rotation = asyncio.run(measure_rotation(5 if args.quick else 20))
    figures.update({name: round(value, 3) for name, value in rotation.items()})
    figures.update(
        quick=args.quick,
        machine=f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
    )
    merge_results(RESULTS, figures)
    for key, value in figures.items():
        print(f"{key:>42}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
