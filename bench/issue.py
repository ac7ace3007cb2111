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
from typing import Any

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
            # One node per agent: an agent ID has one current SVID (attesting again supersedes it), as in SPIRE.
            nodes = [f"node-{i}" for i in range(agents)]
            pods: dict[str, list[dict[str, Any]]] = {}
            agent_pods = {}
            for node in nodes:
                kube.add_node(node)
                pods[node] = [
                    kube.add_pod("bench", f"{node}-p{i}", node_name=node, service_account="app")
                    for i in range(batch)
                ]
                agent_pods[node] = kube.add_pod(
                    "sigil-system", f"agent-{node}", node_name=node, service_account="sigil-agent"
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
                    await kube_parts.pods.wait_for(
                        lambda c: all(len(c.pods_on_node(n)) > batch for n in nodes)
                    )
                csrs = [make_csr(generate_key()) for _ in range(batch)]
                requests = {
                    node: [
                        X509SvidRequest(
                            c,
                            pod={  # type: ignore[arg-type]
                                "namespace": "bench",
                                "name": p["metadata"]["name"],
                                "uid": p["metadata"]["uid"],
                            },
                        )
                        for c, p in zip(csrs, pods[node], strict=True)
                    ]
                    for node in nodes
                }
                agent_pod = agent_pods[nodes[0]]
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

                clients = {node: client_for(server) for node in nodes}
                for node, client in clients.items():
                    await client.attest_k8s(kube.mint_token(agent_pods[node]), "test")
                issued = 0

                async def hammer(node: str, client: object) -> None:
                    nonlocal issued
                    while time.perf_counter() - started < seconds:
                        results = await client.batch_x509_svids(requests[node])  # type: ignore[attr-defined]
                        issued += sum(len(r.svids) for r in results)

                started = time.perf_counter()
                await asyncio.gather(*(hammer(n, c) for n, c in clients.items()))
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
                for client in clients.values():
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
