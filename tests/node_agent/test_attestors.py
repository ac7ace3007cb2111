"""The unix and k8s attestors: which selectors a caller earns, and when a caller cannot be attested."""

from __future__ import annotations

import asyncio
import grp
import hashlib
import os
import pwd
from pathlib import Path
from typing import Any

import pytest
from sigil_testing.waiting import eventually

from sigil.node_agent.attestation.attestors.k8s import (
    InMemoryPodIndex,
    K8sAttestor,
    K8sAttestorSettings,
    Pod,
)
from sigil.node_agent.attestation.attestors.unix import UnixAttestor, UnixAttestorSettings
from sigil.node_agent.attestation.peer import PeerCredentials, process_start_time
from sigil.node_agent.attestation.selectors import Selector
from sigil.node_agent.errors import AttestationError, PeerGoneError

POD_UID = "2c48913c-b29f-11e7-9350-020968147796"
CID = "9bca8d63d5fa610783847915bcff0ecac1273e5b4bed3f6fa1b07350e0135961"
PID = 4321


def _me() -> PeerCredentials:
    return PeerCredentials(
        pid=os.getpid(),
        uid=os.getuid(),
        gid=os.getgid(),
        start_time=process_start_time(os.getpid()),
    )


def _in_pod(proc_root: Path, cgroup: str | None) -> PeerCredentials:
    (proc_root / str(PID)).mkdir(parents=True)
    if cgroup is not None:
        (proc_root / str(PID) / "cgroup").write_text(cgroup)
    return PeerCredentials(pid=PID, uid=1000, gid=1000, start_time=1)


def _pod(**overrides: str) -> Pod:
    fields = {
        "uid": POD_UID,
        "namespace": "payments",
        "name": "web-7d4b9",
        "service_account": "web",
        "node_name": "node-a",
    }
    fields.update(overrides)
    return Pod(**fields, labels={"app": "web", "tier": "front"})


async def test_unix_attestor_reports_user_and_groups() -> None:
    """The caller's uid, gid and their names are selectors."""
    selectors = await UnixAttestor().attest(_me())
    assert Selector("unix", f"uid:{os.getuid()}") in selectors
    assert Selector("unix", f"gid:{os.getgid()}") in selectors
    assert Selector("unix", f"user:{pwd.getpwuid(os.getuid()).pw_name}") in selectors
    assert Selector("unix", f"group:{grp.getgrgid(os.getgid()).gr_name}") in selectors
    assert not any(s.value.startswith(("path:", "sha256:")) for s in selectors)


async def test_unix_attestor_reports_the_supplementary_groups_from_proc(tmp_path: Path) -> None:
    """Every gid on the caller's Groups: line is a selector, with its name when the group has one."""
    (tmp_path / str(PID)).mkdir()
    (tmp_path / str(PID) / "status").write_text(
        "Name:\tweb\nUmask:\t0022\nGid:\t1000\t1000\t1000\t1000\nFDSize:\t64\n"
        "Groups:\t0 4242424 \nNStgid:\t4321\n"
    )
    peer = PeerCredentials(pid=PID, uid=1000, gid=1000, start_time=1)
    selectors = await UnixAttestor(UnixAttestorSettings(proc_root=tmp_path)).attest(peer)
    supplementary = {s.value for s in selectors if s.value.startswith("supplementary_")}
    root = grp.getgrgid(0).gr_name
    assert supplementary == {
        "supplementary_gid:0",
        "supplementary_gid:4242424",
        f"supplementary_group:{root}",
    }


async def test_unix_attestor_reports_no_supplementary_groups_when_proc_has_none(
    tmp_path: Path,
) -> None:
    """A caller whose status has an empty Groups: line, or none readable, gets no supplementary selectors."""
    (tmp_path / str(PID)).mkdir()
    (tmp_path / str(PID) / "status").write_text("Name:\tweb\nGroups:\t\nNStgid:\t4321\n")
    peer = PeerCredentials(pid=PID, uid=1000, gid=1000, start_time=1)
    attestor = UnixAttestor(UnixAttestorSettings(proc_root=tmp_path))
    assert not any(s.value.startswith("supplementary_") for s in await attestor.attest(peer))
    (tmp_path / str(PID) / "status").unlink()
    assert not any(s.value.startswith("supplementary_") for s in await attestor.attest(peer))


async def test_unix_attestor_reports_the_executable_and_its_digest() -> None:
    """With path discovery on, the executable's path and SHA-256 are selectors."""
    exe = os.readlink(f"/proc/{os.getpid()}/exe")
    digest = hashlib.sha256(await asyncio.to_thread(Path(exe).read_bytes)).hexdigest()
    selectors = await UnixAttestor(UnixAttestorSettings(discover_workload_path=True)).attest(_me())
    assert {Selector("unix", f"path:{exe}"), Selector("unix", f"sha256:{digest}")} <= selectors


async def test_unix_attestor_skips_the_digest_of_an_executable_over_the_limit() -> None:
    """An executable larger than the size limit keeps its path selector but gets no digest."""
    settings = UnixAttestorSettings(discover_workload_path=True, workload_size_limit=1024)
    selectors = await UnixAttestor(settings).attest(_me())
    assert any(s.value.startswith("path:") for s in selectors)
    assert not any(s.value.startswith("sha256:") for s in selectors)


async def test_unix_attestor_refuses_an_unreadable_executable(tmp_path: Path) -> None:
    """Path discovery that cannot read the executable refuses the caller instead of guessing."""
    peer = _in_pod(tmp_path, None)
    with pytest.raises(AttestationError, match="executable"):
        await UnixAttestor(
            UnixAttestorSettings(discover_workload_path=True, proc_root=tmp_path)
        ).attest(peer)


async def test_k8s_attestor_reports_the_pod_and_container(tmp_path: Path) -> None:
    """A caller in a known pod gets namespace, service account, pod, labels, node and container selectors."""
    peer = _in_pod(tmp_path, f"0::/kubepods/burstable/pod{POD_UID}/{CID}\n")
    attestor = K8sAttestor(InMemoryPodIndex([_pod()]), K8sAttestorSettings(proc_root=tmp_path))
    selectors = await attestor.attest(peer)
    assert {str(s) for s in selectors} == {
        "k8s:ns:payments",
        "k8s:sa:web",
        f"k8s:pod-uid:{POD_UID}",
        "k8s:pod-name:web-7d4b9",
        "k8s:pod-label:app:web",
        "k8s:pod-label:tier:front",
        "k8s:node-name:node-a",
        f"k8s:container-id:{CID}",
    }


async def test_k8s_attestor_has_nothing_to_say_outside_a_pod(tmp_path: Path) -> None:
    """A host process gets no k8s selectors and is not refused for it."""
    peer = _in_pod(tmp_path, "0::/user.slice/user-1000.slice/session-2.scope\n")
    attestor = K8sAttestor(InMemoryPodIndex(), K8sAttestorSettings(proc_root=tmp_path))
    assert await attestor.attest(peer) == frozenset()


async def test_k8s_attestor_refuses_a_pod_the_node_does_not_know(tmp_path: Path) -> None:
    """A pod UID missing from the index after every poll refuses the caller, naming the pod."""
    peer = _in_pod(tmp_path, f"0::/kubepods/pod{POD_UID}/{CID}\n")
    settings = K8sAttestorSettings(proc_root=tmp_path, max_poll_attempts=3, poll_interval=0)
    with pytest.raises(AttestationError, match=POD_UID):
        await K8sAttestor(InMemoryPodIndex(), settings).attest(peer)


class _CountingPodIndex(InMemoryPodIndex):
    """An index that counts the attestor's lookups, so a test waits for the poll rather than for a guess."""

    def __init__(self) -> None:
        super().__init__()
        self.lookups = 0

    def get_by_uid(self, uid: str) -> Pod | None:
        self.lookups += 1
        return super().get_by_uid(uid)


async def test_k8s_attestor_waits_for_a_pod_the_watch_delivers_late(tmp_path: Path) -> None:
    """A pod that reaches the index while the attestor polls is found."""
    peer = _in_pod(tmp_path, f"0::/kubepods/pod{POD_UID}/{CID}\n")
    pods = _CountingPodIndex()
    settings = K8sAttestorSettings(proc_root=tmp_path, max_poll_attempts=200, poll_interval=0.01)
    attesting = asyncio.create_task(K8sAttestor(pods, settings).attest(peer))
    await eventually(lambda: pods.lookups >= 2, what="the attestor to miss the pod twice")
    assert not attesting.done()
    pods.put(_pod())
    selectors = await asyncio.wait_for(attesting, timeout=10)
    assert Selector("k8s", "ns:payments") in selectors


async def test_k8s_attestor_refuses_a_pod_bound_to_another_node(tmp_path: Path) -> None:
    """A pod whose spec.nodeName is not this node's cannot be running here."""
    peer = _in_pod(tmp_path, f"0::/kubepods/pod{POD_UID}/{CID}\n")
    settings = K8sAttestorSettings(proc_root=tmp_path, node_name="node-b")
    with pytest.raises(AttestationError, match="node-a"):
        await K8sAttestor(InMemoryPodIndex([_pod()]), settings).attest(peer)


async def test_k8s_attestor_reports_an_exited_caller_as_gone(tmp_path: Path) -> None:
    """A caller whose /proc entry vanished is reported gone, not merely unattested."""
    peer = _in_pod(tmp_path, None)
    with pytest.raises(PeerGoneError):
        await K8sAttestor(InMemoryPodIndex(), K8sAttestorSettings(proc_root=tmp_path)).attest(peer)


def test_a_pod_keeps_its_labels_even_if_the_caller_changes_its_dict() -> None:
    """Pod is frozen all the way down: mutating the dict it was built from changes nothing."""
    labels = {"app": "web"}
    pod = Pod(
        uid=POD_UID, namespace="n", name="p", service_account="s", node_name="x", labels=labels
    )
    labels["app"] = "evil"
    assert pod.labels == {"app": "web"}


async def test_unix_attestor_reuses_names_for_their_ttl_then_looks_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Names are looked up once per TTL: a user renamed meanwhile shows under its new name once the TTL has passed.

    The rename is faked at ``pwd.getpwuid``: a test cannot rename a user of the machine without editing /etc/passwd.
    """
    names = iter(["before", "after"])
    real = pwd.getpwuid

    def renamed(uid: int) -> Any:
        entry = real(uid)
        return pwd.struct_passwd((next(names), *entry[1:]))

    monkeypatch.setattr(pwd, "getpwuid", renamed)
    now = [0.0]
    attestor = UnixAttestor(UnixAttestorSettings(names_ttl=30), clock=lambda: now[0])
    assert Selector("unix", "user:before") in await attestor.attest(_me())
    now[0] = 29.0
    assert Selector("unix", "user:before") in await attestor.attest(_me())
    now[0] = 30.0
    assert Selector("unix", "user:after") in await attestor.attest(_me())


def test_unix_attestor_refuses_a_negative_names_ttl() -> None:
    """A negative TTL is a configuration mistake, named as such."""
    with pytest.raises(ValueError, match="names_ttl"):
        UnixAttestorSettings(names_ttl=-1)
