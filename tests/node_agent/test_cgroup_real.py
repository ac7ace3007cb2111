"""The ``k8s`` attestor on real cgroups: a real process moved into a pod-shaped cgroup calls a real agent, which
attests it through the process's real ``/proc/PID/cgroup`` (the cgroup v1 ``pids`` hierarchy, as root)."""

from __future__ import annotations

import asyncio
import secrets
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sigil_testing.cgroups import real_cgroup, why_not_writable
from sigil_testing.cluster import Cluster, cluster
from sigil_testing.controlplane import ControlPlane

from sigil.node_agent.agent import NodeAgent

pytestmark = [
    pytest.mark.slow,
    pytest.mark.kube,
    pytest.mark.skipif(why_not_writable() is not None, reason=str(why_not_writable())),
]


async def fetch_from(cgroup: Path, socket: Path) -> tuple[int, str, str]:
    """Run ``sigil-agent api fetch x509`` as a process that first moves itself into ``cgroup``."""
    process = await asyncio.create_subprocess_exec(
        "sh",
        "-c",
        'echo $$ > "$1/cgroup.procs" && exec "$2" -m sigil.node_agent.cli api fetch x509 --socket "$3"',
        "sh",
        str(cgroup),
        sys.executable,
        str(socket),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.fixture
async def world(control_plane: ControlPlane) -> AsyncIterator[Cluster]:
    """Two nodes, a namespace and the issuer, on the session's control plane."""
    async with cluster(control_plane) as running:
        yield running


@pytest.fixture
async def victim(world: Cluster) -> str:
    """The UID of pod web (ServiceAccount web) on the first node, the identity an attacker wants."""
    pod = world.namespace.pod("web", node=world.node_a, service_account="web")
    await world.pod_cached(world.namespace.name, "web")
    return str(pod["metadata"]["uid"])


def _victim_id(world: Cluster) -> str:
    return f"spiffe://example.org/ns/{world.namespace.name}/sa/web"


async def _agent_knowing(world: Cluster, uid: str) -> NodeAgent:
    agent = NodeAgent(world.agent_settings(world.node_a))
    await agent.start()
    pods = agent.pods
    assert pods is not None
    async with asyncio.timeout(10):
        seen = pods.changes.revision
        while pods.index.get_by_uid(uid) is None:
            seen = await pods.changes.wait_after(seen)
    return agent


async def test_a_process_in_the_pods_kubepods_cgroup_gets_the_pods_svid(
    world: Cluster, victim: str
) -> None:
    """A process kubelet's layout places in the pod (``kubepods/besteffort/pod<UID>/<cid>``) gets its SVID."""
    agent = await _agent_knowing(world, victim)
    try:
        with real_cgroup(f"kubepods/besteffort/pod{victim}/{secrets.token_hex(32)}") as group:
            status, out, err = await fetch_from(group, agent.settings.socket_path)
    finally:
        await agent.aclose()
    assert status == 0, err
    assert _victim_id(world) in out


async def test_a_user_cgroup_named_like_the_pod_gets_nothing(world: Cluster, victim: str) -> None:
    """A process in a cgroup a user could create and name after the pod (a systemd user unit imitating the
    systemd driver's pod slice) is refused, and never sees the pod's SVID."""
    agent = await _agent_knowing(world, victim)
    spoof = (
        "user.slice/user-1000.slice/user@1000.service/app.slice/"
        f"kubepods-besteffort-pod{victim.replace('-', '_')}.slice/"
        f"cri-containerd-{secrets.token_hex(32)}.scope"
    )
    try:
        with real_cgroup(spoof) as group:
            status, out, err = await fetch_from(group, agent.settings.socket_path)
    finally:
        await agent.aclose()
    assert status == 1
    assert _victim_id(world) not in out
    assert "PERMISSION_DENIED" in err
