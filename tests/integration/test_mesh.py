"""The whole mesh minus the kubelet: a real control plane, the issuer, a node agent, workloads as real processes in
real pod cgroups, a policy applied with kubectl, and the enforcer's proxy deciding between two callers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sigil_testing.binaries import kubectl
from sigil_testing.cgroups import real_cgroup, why_not_writable
from sigil_testing.cluster import Cluster, cluster
from sigil_testing.controlplane import ControlPlane
from sigil_testing.network import echo_server, free_port
from sigil_testing.waiting import eventually

from sigil.node_agent.agent import NodeAgent

pytestmark = [
    pytest.mark.kube,
    pytest.mark.slow,
    pytest.mark.skipif(why_not_writable() is not None, reason=str(why_not_writable())),
]

_CRDS = Path(__file__).resolve().parents[2] / "deploy" / "crds"
_SIGIL_ENFORCER = str(Path(sys.executable).parent / "sigil-enforcer")
# A workload that fetches its X.509 SVID and bundle with py-spiffe and saves them as PEM files.
_FETCH = """
import sys
from cryptography.hazmat.primitives.serialization import Encoding
from spiffe import WorkloadApiClient
with WorkloadApiClient() as client:
    context = client.fetch_x509_context()
svid = context.default_svid
svid.save(sys.argv[1] + "/svid.pem", sys.argv[1] + "/svid.key", Encoding.PEM)
bundle = context.x509_bundle_set.get_bundle_for_trust_domain(svid.spiffe_id.trust_domain)
bundle.save(sys.argv[1] + "/bundle.pem", Encoding.PEM)
print(svid.spiffe_id)
"""


def _kubectl(plane: ControlPlane, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(  # noqa: S603 - the pinned kubectl with our own arguments
        [kubectl(), f"--kubeconfig={plane.kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
async def world(control_plane: ControlPlane) -> AsyncIterator[Cluster]:
    """The policy CRDs applied with kubectl, then the issuer watching them and the cluster's pods."""
    await asyncio.to_thread(_kubectl, control_plane, "apply", "-k", str(_CRDS))
    await asyncio.to_thread(
        _kubectl,
        control_plane,
        *("wait", "--for=condition=Established", "--timeout=60s"),
        *("crd/authorizationpolicies.authz.sigil.dev",),
    )
    async with cluster(control_plane, watch_crds=True) as running:
        yield running


def _pod_cgroup(pod: dict[str, Any]) -> str:
    return f"kubepods/besteffort/pod{pod['metadata']['uid']}/{secrets.token_hex(32)}"


def _in_cgroup(cgroup: Path, *argv: str) -> list[str]:
    """``argv`` run as a process that first moves itself into ``cgroup``."""
    return [
        "sh",
        "-c",
        'echo $$ > "$1/cgroup.procs" && shift && exec "$@"',
        "sh",
        str(cgroup),
        *argv,
    ]


async def _fetch_svid(cgroup: Path, workload_api: Path, into: Path) -> str:
    """Run the py-spiffe workload in ``cgroup``; the SPIFFE ID it was given."""
    await asyncio.to_thread(into.mkdir)
    process = await asyncio.create_subprocess_exec(
        *_in_cgroup(cgroup, sys.executable, "-c", _FETCH, str(into)),
        env={**os.environ, "SPIFFE_ENDPOINT_SOCKET": f"unix://{workload_api}"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return out.decode().strip()


async def _through(port: int, credentials: Path) -> bytes:
    """What comes back through the proxy for one line, as the caller whose SVID is in ``credentials``."""
    context = ssl.create_default_context(cafile=str(credentials / "bundle.pem"))
    context.check_hostname = False  # SPIFFE peers are named by URI SAN, not host name
    context.load_cert_chain(credentials / "svid.pem", credentials / "svid.key")
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    writer.write(b"through\n")
    try:
        return await reader.readline()
    except ConnectionError:
        return b""
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError, ssl.SSLError):
            await writer.wait_closed()


async def _listening(process: asyncio.subprocess.Process) -> None:
    assert process.stderr is not None
    lines = []
    while line := (await asyncio.wait_for(process.stderr.readline(), 60)).decode():
        lines.append(line)
        if '"proxy listening"' in line:
            return
    raise AssertionError("the proxy exited before listening:\n" + "".join(lines))


async def test_policy_applied_with_kubectl_lets_one_pod_through_the_proxy_and_not_another(
    control_plane: ControlPlane, world: Cluster
) -> None:
    """Three pods on one node: db runs the enforcer's proxy with its SVID from the agent, web and api fetch
    theirs with py-spiffe; a policy applied with kubectl admits web to db, so web's line comes back and api's
    connection is closed."""
    ns = world.namespace
    db = ns.pod("db", node=world.node_a, service_account="db", labels={"app": "db"})
    web = ns.pod("web", node=world.node_a, service_account="web")
    api = ns.pod("api", node=world.node_a, service_account="api")
    policy = {
        "apiVersion": "authz.sigil.dev/v1alpha1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": "db-from-web", "namespace": ns.name},
        "spec": {
            "targetRefs": [
                {"group": "", "kind": "Pod", "selector": {"matchLabels": {"app": "db"}}}
            ],
            "action": "ALLOW",
            "enforcementLevel": "Network",
            "rules": [
                {
                    "sources": [
                        {"type": "SPIFFE", "spiffe": f"spiffe://example.org/ns/{ns.name}/sa/web"}
                    ]
                }
            ],
        },
    }
    await asyncio.to_thread(
        _kubectl, control_plane, "apply", "-f", "-", stdin=yaml.safe_dump(policy)
    )
    feed = world.server.issuer.policies
    await eventually(
        lambda: any(p["name"] == "db-from-web" for p in feed.listing()),
        what="the issuer's feed to hold the applied policy",
        within=30,
    )
    async with echo_server() as echo:
        agent = NodeAgent(world.agent_settings(world.node_a))
        await agent.start()
        try:
            pods = agent.pods
            assert pods is not None
            async with asyncio.timeout(20):
                seen = pods.changes.revision
                while pods.index.get_by_uid(api["metadata"]["uid"]) is None:
                    seen = await pods.changes.wait_after(seen)
            workload_api = agent.settings.socket_path
            listen = free_port()
            with (
                real_cgroup(_pod_cgroup(db)) as db_group,
                real_cgroup(_pod_cgroup(web)) as web_group,
                real_cgroup(_pod_cgroup(api)) as api_group,
            ):
                proxy = await asyncio.create_subprocess_exec(
                    *_in_cgroup(
                        db_group,
                        _SIGIL_ENFORCER,
                        *("proxy", "inbound", "--listen", f"127.0.0.1:{listen}"),
                        *("--forward", str(echo)),
                        *("--policies-from-agent", f"unix://{workload_api}"),
                        *("--namespace", ns.name, "--labels", "app=db", "--default", "allow"),
                    ),
                    env={**os.environ, "SPIFFE_ENDPOINT_SOCKET": f"unix://{workload_api}"},
                    stderr=asyncio.subprocess.PIPE,
                )
                try:
                    await _listening(proxy)
                    web_id = await _fetch_svid(web_group, workload_api, world.directory / "web")
                    api_id = await _fetch_svid(api_group, workload_api, world.directory / "api")
                    through_web = await _through(listen, world.directory / "web")
                    through_api = await _through(listen, world.directory / "api")
                finally:
                    if proxy.returncode is None:
                        proxy.kill()
                    await proxy.wait()
        finally:
            await agent.aclose()
    assert web_id == f"spiffe://example.org/ns/{ns.name}/sa/web"
    assert api_id == f"spiffe://example.org/ns/{ns.name}/sa/api"
    assert (through_web, through_api) == (b"through\n", b"")
