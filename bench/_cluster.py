"""bench/scale.py's cluster: the pods, nodes and agent tokens on the real API server, and the issuer's process.

The issuer runs in a child process of its own (``python bench/_cluster.py --issuer DIR KUBECONFIG NAMESPACE``) so
that its CPU time is its own; it speaks a line protocol on stdin/stdout with the benchmark: its URL and bundle
first, then ``ok`` to each ``sync {node: pods}`` (its pod cache holds them all) and ``at ISO-TIME`` (its clock,
the CA's included, stands at that moment from now on). End of input stops it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from _stacks import cpu_seconds
from sigil_testing.controlplane import ControlPlane
from sigil_testing.realkube import Namespace, add_node

from sigil.node_agent.attestation.selectors import Pod

__all__ = ["AGENT_ACCOUNT", "CLUSTER", "IssuerProcess", "Node", "populate", "tokenreviews"]

CLUSTER = "scale"
AGENT_ACCOUNT = "sigil-agent"
AGENT_AUDIENCE = "sigil-server"
SERVICE_ACCOUNTS = 10


# ---------------------------------------------------------------------------------------------- the issuer process


async def _issuer_process(data_dir: Path, kubeconfig: Path, namespace: str) -> None:
    """Runs in the child: serve the issuer; obey ``sync N``, ``at ISO`` and end-of-input on stdin."""
    from sigil_testing.issuer import issuer_settings, running_issuer

    from sigil.issuer.kube.identity import ServiceAccountRef
    from sigil.issuer.settings import PolicySettings
    from sigil.issuer.settings.sections import KubeSettings

    kube = KubeSettings(
        kubeconfig=kubeconfig,
        cluster=CLUSTER,
        agent_service_accounts=(ServiceAccountRef(namespace, AGENT_ACCOUNT),),
    )
    settings = issuer_settings(
        data_dir,
        kubeconfig=kubeconfig,
        kubernetes=kube,
        policy=PolicySettings(watch_crds=False),
        agent_svid_ttl=timedelta(hours=12),
    )
    frozen: list[datetime] = []

    def clock() -> datetime:
        return frozen[-1] if frozen else datetime.now(UTC)

    async with running_issuer(settings, clock=clock) as server:
        kube_state = server.issuer.kube
        assert kube_state is not None
        bundle = server.issuer.ca.bundle().to_pem().decode()
        print(json.dumps({"url": server.url, "bundle": bundle}), flush=True)
        while line := await asyncio.to_thread(sys.stdin.readline):
            verb, _, argument = line.strip().partition(" ")
            if verb == "sync":
                expected: dict[str, int] = json.loads(argument)

                def synced(c: Any, expected: dict[str, int] = expected) -> bool:
                    return all(len(c.pods_on_node(n)) >= k for n, k in expected.items())

                await kube_state.pods.wait_for(synced)
            elif verb == "at":
                frozen.append(datetime.fromisoformat(argument))
            print("ok", flush=True)


class IssuerProcess:
    """The issuer in a child process, and the line protocol that syncs and moves its clock."""

    def __init__(self, child: asyncio.subprocess.Process) -> None:
        self.child = child
        self.url = ""
        self.bundle = b""

    @classmethod
    async def start(cls, directory: Path, plane: ControlPlane, namespace: str) -> IssuerProcess:
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--issuer",
            str(directory),
            str(plane.kubeconfig),
            namespace,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=(directory.parent / "issuer.log").open("ab"),
        )
        issuer = cls(child)
        first = json.loads(await issuer._line())
        issuer.url, issuer.bundle = first["url"], first["bundle"].encode()
        return issuer

    async def _line(self) -> str:
        assert self.child.stdout is not None
        line = await asyncio.wait_for(self.child.stdout.readline(), timeout=300)
        if not line:
            raise RuntimeError("the issuer process ended; see issuer.log")
        return line.decode()

    async def say(self, line: str) -> None:
        assert self.child.stdin is not None
        self.child.stdin.write(line.encode() + b"\n")
        await self.child.stdin.drain()
        assert (await self._line()).strip() == "ok"

    def cpu(self) -> float:
        return cpu_seconds(self.child.pid)

    async def stop(self) -> None:
        assert self.child.stdin is not None
        self.child.stdin.close()
        await asyncio.wait_for(self.child.wait(), timeout=60)


# ---------------------------------------------------------------------------------------------- the cluster


@dataclass
class Node:
    name: str
    agent_token: str = ""
    pods: list[Pod] = field(default_factory=list)


def tokenreviews(plane: ControlPlane) -> int:
    """TokenReview requests the API server has served (its own ``apiserver_request_total``)."""
    context = ssl.create_default_context(cafile=plane.ca_file)
    headers = {"Authorization": f"Bearer {plane.admin_token}"}
    request = urllib.request.Request(plane.url + "/metrics", headers=headers)  # noqa: S310 -- https, built here
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )
    with opener.open(request, timeout=30) as reply:
        text = reply.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("apiserver_request_total{") and 'resource="tokenreviews"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def populate(plane: ControlPlane, namespace: Namespace, nodes: int, pods: int) -> list[Node]:
    """Nodes, an agent pod with its projected token on each, and ``pods`` workload pods spread over them."""
    namespace.service_account(AGENT_ACCOUNT)
    for n in range(SERVICE_ACCOUNTS):
        namespace.service_account(f"app-{n}")
    cluster = [Node(add_node(plane)) for _ in range(nodes)]
    path = f"/api/v1/namespaces/{namespace.name}/pods"

    def create(i: int) -> Pod:
        node, account = cluster[i % nodes].name, f"app-{i % SERVICE_ACCOUNTS}"
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"w-{i}"},
            "spec": {
                "serviceAccountName": account,
                "nodeName": node,
                "containers": [{"name": "app", "image": "registry.invalid/app:1"}],
            },
        }
        meta = plane.request("POST", path, body)["metadata"]
        return Pod(
            uid=meta["uid"],
            namespace=namespace.name,
            name=meta["name"],
            service_account=account,
            node_name=node,
        )

    def agent_token(node: Node) -> str:
        pod = namespace.pod(f"agent-{node.name}", node=node.name, service_account=AGENT_ACCOUNT)
        return namespace.token(pod, AGENT_AUDIENCE)

    with ThreadPoolExecutor(8) as pool:
        for pod in pool.map(create, range(pods)):
            next(n for n in cluster if n.name == pod.node_name).pods.append(pod)
        for node, token in zip(cluster, pool.map(agent_token, cluster), strict=True):
            node.agent_token = token
    return cluster


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] != "--issuer":
        sys.exit("usage: _cluster.py --issuer DIR KUBECONFIG NAMESPACE (bench/scale.py starts it)")
    # stdout is the line protocol with the parent: logs go to stderr (the issuer.log file).
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    asyncio.run(_issuer_process(Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]))
