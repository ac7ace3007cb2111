"""The agents of ``bench/issue.py``, in a process of their own: the load generator must not share the issuer's core.

Reads one JSON document on stdin (the issuer's URL, its PEM bundle, each agent's token and pods, the CSRs, how long),
attests every agent, then has each one ask for its batch again and again; prints ``{"issued": N, "seconds": S, "cpu_seconds": C}``
(C over S says how much of a core the agents themselves needed).

    python bench/_issue_agents.py CPU < job.json
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

from sigil.ca.bundle import TrustBundle
from sigil.ca.spiffe_id import TrustDomain
from sigil.issuer.client import IssuerClient, X509SvidRequest


async def _hammer(job: dict[str, Any]) -> dict[str, float]:
    bundle = TrustBundle.parse_pem(TrustDomain(job["trust_domain"]), job["bundle_pem"].encode())
    csrs = [c.encode() for c in job["csrs"]]
    clients = []
    for agent in job["agents"]:
        client = IssuerClient(job["url"], bundle=bundle)
        await client.attest_k8s(agent["token"], "test")
        requests = [
            X509SvidRequest(csr, pod=pod) for csr, pod in zip(csrs, agent["pods"], strict=True)
        ]
        clients.append((client, requests))
    issued = 0
    seconds = float(job["seconds"])

    async def one(client: IssuerClient, requests: list[X509SvidRequest]) -> None:
        nonlocal issued
        while time.perf_counter() - started < seconds:
            results = await client.batch_x509_svids(requests)
            issued += sum(len(r.svids) for r in results)

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one(c, r) for c, r in clients))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    for client, _ in clients:
        await client.aclose()
    return {"issued": issued, "seconds": elapsed, "cpu_seconds": cpu}


def main() -> int:
    if len(sys.argv) > 1 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(sys.argv[1])})
    job = json.loads(sys.stdin.read())
    print(json.dumps(asyncio.run(_hammer(job))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
