"""SVIDs per second through the running issuer (mTLS, batches of 100, a few agents) against in-process minting.

Why: the service adds HTTP, JSON, TLS, node authorization and the pod cache in front of the CA; the bar is that it
keeps at least 60% of the CA's own minting rate (``ratio >= 0.6``). Also TokenReview-authenticated requests per
second against the kube-apiserver stand-in, with the verdict cache warm and cold. Writes ``bench/results/issue.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from sigil_testing.issuer import client_for, issuer_settings, running_issuer
from sigil_testing.kube import KubeApiServer

from sigil.ca.keys import generate_key
from sigil.ca.service import X509Request
from sigil.issuer.client import X509SvidRequest, make_csr

RESULTS = Path(__file__).parent / "results" / "issue.json"


async def _bench(seconds: float, batch: int, agents: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        async with KubeApiServer() as kube:
            kube.add_node("node-a")
            pods = [
                kube.add_pod("bench", f"p{i}", node_name="node-a", service_account="app")
                for i in range(batch)
            ]
            agent_pod = kube.add_pod(
                "sigil-system", "agent", node_name="node-a", service_account="sigil-agent"
            )
            settings = issuer_settings(
                root / "data",
                kubeconfig=kube.write_kubeconfig(root / "kubeconfig"),
                rate_per_second=1e6,
                rate_burst=1e6,
            )
            async with running_issuer(settings) as server:
                ca, kube_parts = server.issuer.ca, server.issuer.kube
                assert kube_parts is not None
                async with asyncio.timeout(10):
                    await kube_parts.pods.wait_for(lambda c: len(c.pods_on_node("node-a")) > batch)
                csrs = [make_csr(generate_key()) for _ in range(batch)]
                refs = [
                    {
                        "namespace": "bench",
                        "name": p["metadata"]["name"],
                        "uid": p["metadata"]["uid"],
                    }
                    for p in pods
                ]
                requests = [
                    X509SvidRequest(c, pod=r)  # type: ignore[arg-type]
                    for c, r in zip(csrs, refs, strict=True)
                ]
                token = kube.mint_token(agent_pod)

                # In-process: the CA's own batch minting, same CSRs and IDs.
                ids = [
                    server.issuer.ca.trust_domain.trust_domain.spiffe_id("ns", "bench", "sa", "app")
                ]
                inproc = [X509Request(ids[0], csr=c) for c in csrs]
                count, started = 0, time.perf_counter()
                while time.perf_counter() - started < seconds:
                    count += len(await ca.mint_x509_svids(inproc))
                inprocess_per_s = count / (time.perf_counter() - started)

                clients = [client_for(server) for _ in range(agents)]
                for client in clients:
                    await client.attest_k8s(token, "test")
                issued = 0

                async def hammer(client: object) -> None:
                    nonlocal issued
                    while time.perf_counter() - started < seconds:
                        results = await client.batch_x509_svids(requests)  # type: ignore[attr-defined]
                        issued += sum(len(r.svids) for r in results)

                started = time.perf_counter()
                await asyncio.gather(*(hammer(c) for c in clients))
                svids_per_s = issued / (time.perf_counter() - started)

                # TokenReview: cold (a new token each time) and warm (one token, cached verdict).
                agents_auth = kube_parts.agents
                cold_tokens = [kube.mint_token(agent_pod) for _ in range(200)]
                started = time.perf_counter()
                for t in cold_tokens:
                    await agents_auth.authenticate(t)
                cold = len(cold_tokens) / (time.perf_counter() - started)
                started, warm_count = time.perf_counter(), 0
                while time.perf_counter() - started < min(seconds, 2):
                    await agents_auth.authenticate(token)
                    warm_count += 1
                warm = warm_count / (time.perf_counter() - started)
                for client in clients:
                    await client.aclose()
    return {
        "svids_per_s": round(svids_per_s, 1),
        "inprocess_per_s": round(inprocess_per_s, 1),
        "ratio": round(svids_per_s / inprocess_per_s, 3),
        "batch": batch,
        "agents": agents,
        "tokenreview_cold_per_s": round(cold, 1),
        "tokenreview_warm_per_s": round(warm, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a few seconds per figure")
    args = parser.parse_args()
    # Every authentication is logged at info; the benchmark measures work, not logging.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    figures = asyncio.run(_bench(3.0 if args.quick else 15.0, batch=100, agents=4))
    figures["quick"] = args.quick
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    for key, value in figures.items():
        print(f"{key:>24}: {value}")
    return 0 if figures["ratio"] >= 0.6 else 1


if __name__ == "__main__":
    sys.exit(main())
