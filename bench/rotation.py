"""Rotation under traffic: failed requests per step, and the time from a taint until every workload is re-issued.

1. **The drill** (``tests/sigil_testing/drill.py``, the same as ``tests/integration/test_rotation_drill.py``): one
   real issuer (``sigil-server``'s app, SQLite), one real node agent, a TLS server workload (the enforcer's SpiffeTls
   over the Workload API) and a client workload in its own process (py-spiffe's X509Source, a JWT-SVID in every
   request, validated by the server through the agent), a request every 30 ms. The operator runs ``prepare``,
   ``activate``, ``taint``, waits for the re-issue, then ``revoke``, for the X.509 and then the JWT authority, through
   the admin socket as ``sigil-server`` does. Figures: requests and failures per step (failures must be 0), and the
   same totals for requests every 30 ms through a real Envoy pair configured only by SDS from the same agent
   (``drill_envoy_*``, ``upstream_drill_envoy_*``). Needs
   root (the client runs with its own gid, which its registration entry selects); skipped otherwise.
2. **Taint to re-issued**, with 100 and 1,000 workloads on one real agent of the real issuer. The workloads are
   *simulated*: distinct attested identities (``unix:uid:N`` selectors, one registration entry each) asking the
   agent's SVID cache directly, which is what the Workload API does for each attested caller; holding 1,000 real
   processes with streams is too heavy for this machine. The clock starts before the admin ``taint`` call and stops,
   per workload, when the agent holds an SVID for it signed by the new authority. Baseline in the same run: the
   first issuance of the same workloads (cold cache), so ``reissue_over_first_issue`` says how a taint compares to a
   cold start of the node.

3. **Upstream root rotation**, the same two measurements with the issuer under an operator's upstream CA: the drill
   runs ``upstream prepare``, ``activate``, waits for the re-issue, then ``retire``; the re-issue clock starts before
   ``upstream activate`` (which activates the authority under the new root and taints the old ones in one step) and
   each round moves to a freshly written upstream. Keys ``upstream_drill_*`` and ``upstream_reissue_N``.

    python bench/rotation.py            # drill once, 3 taints each with 100 and 1,000 workloads
    python bench/rotation.py --quick    # drill once, 1 taint each, under a minute
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import structlog
from _results import merge_results  # bench/ is the script's own directory
from cryptography import x509

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from sigil_testing.ca import write_upstream_ca
from sigil_testing.drill import CLIENT_GID, Traffic, drill_server, traffic
from sigil_testing.enrolment import enrol_agent
from sigil_testing.envoy_drill import EnvoyLeg, envoy_pair, every
from sigil_testing.issuer import issuer_settings, running_issuer

from sigil.ca.authority import AuthorityKind
from sigil.ca.spiffe_id import SpiffeId
from sigil.ca.upstream_verbs import UpstreamVerbs
from sigil.issuer.admin import SocketAdmin
from sigil.issuer.edge.listeners import IssuerServer
from sigil.node_agent.agent import NodeAgent
from sigil.node_agent.attestation.peer import PeerCredentials
from sigil.node_agent.attestation.selectors import Selector, WorkloadAttestation
from sigil.node_agent.settings import RotationSettings

RESULTS = Path(__file__).parent / "results" / "rotation.json"
SERVER_ID = SpiffeId.parse("spiffe://example.org/drill/server")
CLIENT_ID = SpiffeId.parse("spiffe://example.org/drill/client")
DWELL = 30  # requests after each step (about a second at 30 ms apart)
_ROTATION = RotationSettings(
    backoff_initial=timedelta(milliseconds=50),
    bundle_wait=timedelta(seconds=1),
    idle_timeout=timedelta(hours=1),
)


@contextlib.asynccontextmanager
async def _issuer(directory: Path, *, upstream: bool = False) -> AsyncIterator[IssuerServer]:
    first = write_upstream_ca(directory / "upstream-0").directory if upstream else None
    settings = issuer_settings(
        directory / "server",
        refresh_interval=timedelta(seconds=0.2),
        rotate_interval=timedelta(seconds=1),
        ca_options={"upstream_dir": first} if first else None,
    )
    async with running_issuer(settings) as server:
        yield server


async def _wait_replaced(server: IssuerServer, authority_id: str) -> None:
    # The count lives in the datastore, which signals nothing: polled, as an operator polls `authority show`.
    while (await server.issuer.ca.outstanding(authority_id)).count:  # noqa: ASYNC110
        await asyncio.sleep(0.05)


async def _step(flows: Sequence[Traffic], name: str, action: Awaitable[object]) -> None:
    """Name the step on every leg, take it, then let ``DWELL`` requests pass on each."""
    for flow in flows:
        flow.step(name)
    await action
    await asyncio.gather(*(flow.pass_requests(DWELL) for flow in flows))


async def _drill_rotation(
    server: IssuerServer, admin: SocketAdmin, flows: Sequence[Traffic], kind: AuthorityKind
) -> None:
    old = server.issuer.ca.signer(kind).authority.authority_id
    for verb, authority_id in (("prepare", None), ("activate", None), ("taint", old)):
        await _step(
            flows, f"{kind.value} {verb}", admin.authority_step(verb, kind.value, authority_id)
        )
    await _step(flows, f"{kind.value} re-issue", asyncio.wait_for(_wait_replaced(server, old), 60))
    await _step(flows, f"{kind.value} revoke", admin.authority_step("revoke", kind.value, old))


async def _wait_upstream_replaced(server: IssuerServer) -> None:
    # As `upstream show` reports it: nothing unreplaced under any recorded upstream root.
    verbs = UpstreamVerbs(server.issuer.ca)
    while any(v.outstanding.count for v in await verbs.show()):  # noqa: ASYNC110 - polled, as `upstream show` is
        await asyncio.sleep(0.05)


async def _drill_upstream(
    server: IssuerServer, admin: SocketAdmin, flows: Sequence[Traffic], directory: Path
) -> None:
    new = write_upstream_ca(directory / "upstream-1").directory
    for verb, where in (("prepare", str(new)), ("activate", None)):
        await _step(flows, f"upstream {verb}", admin.upstream_step(verb, where))
    await _step(flows, "upstream re-issue", asyncio.wait_for(_wait_upstream_replaced(server), 60))
    await _step(flows, "upstream retire", admin.upstream_step("retire", None))


async def drill(directory: Path, *, upstream: bool = False) -> dict[str, Any]:
    """Requests and failures per rotation step: X.509 then JWT, or an upstream root rotation."""
    async with (
        _issuer(directory, upstream=upstream) as server,
        SocketAdmin(server.admin_socket) as admin,
    ):
        entries = {SERVER_ID: ["unix:gid:0"], CLIENT_ID: [f"unix:gid:{CLIENT_GID}"]}
        settings = await enrol_agent(server, directory, entries, rotation=_ROTATION)
        envoy_flow = (
            Traffic()
        )  # through a real Envoy pair on SDS (both hold SERVER_ID: they run with gid 0)
        async with (
            NodeAgent(settings),
            drill_server(settings.socket_path, CLIENT_ID) as port,
            traffic(settings.socket_path, port, SERVER_ID) as flow,
            envoy_pair(settings.socket_path, directory) as caller_port,
            aiohttp.ClientSession() as session,
            every(envoy_flow, EnvoyLeg(session, caller_port).request),
        ):
            flows = (flow, envoy_flow)
            await _step(flows, "before", asyncio.sleep(0))
            if upstream:
                await _drill_upstream(server, admin, flows, directory)
            else:
                for kind in (AuthorityKind.X509, AuthorityKind.JWT):
                    await _drill_rotation(server, admin, flows, kind)
    steps = {
        name: {"requests": c.requests, "failures": c.failures, "reasons": dict(c.reasons)}
        for name, c in flow.steps.items()
    }
    prefix = "upstream_drill" if upstream else "drill"
    return {
        f"{prefix}_steps": steps,
        f"{prefix}_requests": sum(c.requests for c in flow.steps.values()),
        f"{prefix}_failures": sum(c.failures for c in flow.steps.values()),
        f"{prefix}_envoy_requests": sum(c.requests for c in envoy_flow.steps.values()),
        f"{prefix}_envoy_failures": sum(c.failures for c in envoy_flow.steps.values()),
    }


def _workload(n: int) -> WorkloadAttestation:
    peer = PeerCredentials(pid=os.getpid(), uid=200_000 + n, gid=200_000 + n, start_time=0)
    return WorkloadAttestation(peer, frozenset({Selector("unix", f"uid:{200_000 + n}")}))


def _signer(chain_der: bytes) -> str:
    leaf = x509.load_der_x509_certificate(_first_der(chain_der))
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    return (aki.key_identifier or b"").hex()


def _first_der(chain: bytes) -> bytes:
    # DER SEQUENCE with a two-byte long-form length (every certificate here is 256..65535 bytes).
    length = int.from_bytes(chain[2:4], "big") if chain[1] == 0x82 else chain[1]
    return chain[: 4 + length] if chain[1] == 0x82 else chain[: 2 + length]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def reissue(
    directory: Path, count: int, taints: int, *, upstream: bool = False
) -> dict[str, Any]:
    """First issuance of ``count`` workloads, then ``taints`` rotations timed from taint to all re-issued."""
    async with (
        _issuer(directory, upstream=upstream) as server,
        SocketAdmin(server.admin_socket) as admin,
    ):
        td = server.issuer.ca.settings.trust_domain
        entries = {td.spiffe_id("w", str(n)): [f"unix:uid:{200_000 + n}"] for n in range(count)}
        settings = await enrol_agent(server, directory, entries, rotation=_ROTATION)
        async with NodeAgent(settings) as agent:
            cache = agent.svid_cache
            workloads = [_workload(n) for n in range(count)]
            started = time.perf_counter()
            await asyncio.gather(*(cache.x509_svids(w) for w in workloads))
            first_issue_ms = (time.perf_counter() - started) * 1000
            per_workload: list[float] = []
            all_ms: list[float] = []
            for round_ in range(taints):
                old = server.issuer.ca.signer(AuthorityKind.X509).authority.authority_id
                if upstream:
                    where = write_upstream_ca(directory / f"upstream-{round_ + 1}").directory
                    prepared = await admin.upstream_step("prepare", str(where))
                    new = prepared["authority"]["authority_id"]
                else:
                    await admin.authority_step("prepare", "x509", None)
                    await admin.authority_step("activate", "x509", None)
                    new = server.issuer.ca.signer(AuthorityKind.X509).authority.authority_id
                pending = set(range(count))
                seen = cache.changes.revision
                started = time.perf_counter()
                if upstream:
                    await admin.upstream_step("activate", None)
                else:
                    await admin.authority_step("taint", "x509", old)
                async with asyncio.timeout(120):
                    while pending:
                        for n in list(pending):
                            (svid,) = await cache.x509_svids(workloads[n])
                            if _signer(svid.cert_chain) == new:
                                pending.discard(n)
                                per_workload.append((time.perf_counter() - started) * 1000)
                        if pending:
                            seen = await cache.changes.wait_after(seen)
                all_ms.append((time.perf_counter() - started) * 1000)
                if upstream:
                    await asyncio.wait_for(_wait_upstream_replaced(server), 60)
                    await admin.upstream_step("retire", None)
                else:
                    await asyncio.wait_for(_wait_replaced(server, old), 60)
                    await admin.authority_step("revoke", "x509", old)
    return {
        "workloads": count,
        "taints": taints,
        "first_issue_all_ms": round(first_issue_ms, 1),
        "reissue_p50_ms": round(_percentile(per_workload, 0.50), 1),
        "reissue_p99_ms": round(_percentile(per_workload, 0.99), 1),
        "reissue_all_ms_median": round(statistics.median(all_ms), 1),
        "reissue_over_first_issue": round(statistics.median(all_ms) / first_issue_ms, 3),
    }


async def main(quick: bool) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "workloads_simulated_as": "distinct attested identities (unix:uid selectors) asking one real agent's "
        "SVID cache directly, one registration entry each; the drill's two workloads are real (one its own process)",
        "upstream_reissue_clock": "starts before `upstream activate`, which activates and taints in one step",
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    with tempfile.TemporaryDirectory(prefix="sg-", dir="/tmp") as tmp:
        for upstream, prefix in ((False, ""), (True, "upstream_")):
            if os.getuid() == 0:
                (Path(tmp) / f"{prefix}drill").mkdir()
                figures.update(await drill(Path(tmp) / f"{prefix}drill", upstream=upstream))
            else:
                figures[f"{prefix}drill_steps"] = (
                    "skipped: the client workload needs its own gid (root)"
                )
            for count in (100, 1000):
                directory = Path(tmp) / f"{prefix}n{count}"
                directory.mkdir()
                figures[f"{prefix}reissue_{count}"] = await reissue(
                    directory, count, 1 if quick else 3, upstream=upstream
                )
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one taint per size, under a minute")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    result = asyncio.run(main(args.quick))
    print(json.dumps(result, indent=2))
    merge_results(RESULTS, result)
