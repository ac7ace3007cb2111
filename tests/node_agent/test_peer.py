"""Peer credentials taken at accept, and the guard against a pid that changed hands during attestation."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from sigil.node_agent.attestation.caller import Attestation
from sigil.node_agent.attestation.peer import (
    PeerCredentials,
    capture_peer,
    ensure_peer_alive,
    process_start_time,
)
from sigil.node_agent.attestation.selectors import Pod, Selector, Selectors
from sigil.node_agent.errors import PeerGoneError


def _fake_stat(proc_root: Path, pid: int, start_time: int, comm: str = "web (worker) 1") -> None:
    # Fields after comm: state (3) ... starttime (22); comm may hold spaces and parentheses.
    fields = ["S"] + [str(n) for n in range(4, 22)] + [str(start_time)] + ["0"] * 30
    (proc_root / str(pid)).mkdir(parents=True, exist_ok=True)
    (proc_root / str(pid) / "stat").write_text(f"{pid} ({comm}) {' '.join(fields)}\n")


def test_capture_returns_this_process_credentials() -> None:
    """SO_PEERCRED on a connected Unix socket names this process's pid, uid and gid."""
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right:
        peer = capture_peer(left)
    assert (peer.pid, peer.uid, peer.gid) == (os.getpid(), os.getuid(), os.getgid())
    assert peer.start_time == process_start_time(os.getpid())


def test_start_time_is_read_past_a_comm_with_spaces_and_parentheses(tmp_path: Path) -> None:
    """Field 22 is found even when the command name holds ') ' itself."""
    _fake_stat(tmp_path, 41, 987654, comm="evil) S 1 2 3")
    assert process_start_time(41, proc_root=tmp_path) == 987654


def test_a_reused_pid_is_refused(tmp_path: Path) -> None:
    """A pid whose start time differs from the one seen at accept is reported gone."""
    _fake_stat(tmp_path, 42, 1000)
    peer = PeerCredentials(pid=42, uid=1000, gid=1000, start_time=1000)
    ensure_peer_alive(peer, proc_root=tmp_path)
    _fake_stat(tmp_path, 42, 1001)
    with pytest.raises(PeerGoneError, match="reused"):
        ensure_peer_alive(peer, proc_root=tmp_path)


def test_an_exited_process_is_refused() -> None:
    """Once the process that connected has exited, its credentials no longer pass."""
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    peer = PeerCredentials(
        pid=child.pid, uid=os.getuid(), gid=os.getgid(), start_time=process_start_time(child.pid)
    )
    ensure_peer_alive(peer)
    assert child.stdin is not None
    child.stdin.close()
    child.wait(timeout=30)
    with pytest.raises(PeerGoneError, match="exited"):
        ensure_peer_alive(peer)


class _ReusingAttestor:
    """An attestor during whose work the caller exits and its pid goes to a new process."""

    name = "reuse"

    def __init__(self, proc_root: Path) -> None:
        self._proc_root = proc_root

    async def attest(self, peer: PeerCredentials) -> Selectors:
        _fake_stat(self._proc_root, peer.pid, peer.start_time + 500)
        return frozenset({Selector("unix", f"uid:{peer.uid}")})


async def test_attestation_refuses_a_pid_reused_while_attestors_ran(tmp_path: Path) -> None:
    """Selectors read about a pid that changed hands are thrown away and the caller is refused."""
    _fake_stat(tmp_path, 43, 2000)
    peer = PeerCredentials(pid=43, uid=1000, gid=1000, start_time=2000)
    attestation = Attestation([_ReusingAttestor(tmp_path)], proc_root=tmp_path)
    with pytest.raises(PeerGoneError):
        await attestation.attest(peer)


async def test_attestation_unites_the_attestors_selectors(tmp_path: Path) -> None:
    """A live caller gets every attestor's selectors."""
    _fake_stat(tmp_path, 44, 3000)
    peer = PeerCredentials(pid=44, uid=1000, gid=1000, start_time=3000)

    class _Fixed:
        name = "fixed"

        async def attest(self, peer: PeerCredentials) -> Selectors:
            return frozenset({Selector("k8s", "ns:web")})

    result = await Attestation([_Fixed()], proc_root=tmp_path).attest(peer)
    assert result.selectors == {Selector("k8s", "ns:web")}
    assert result.peer == peer
    assert result.pod is None


async def test_the_attested_caller_carries_the_pod_an_attestor_found(tmp_path: Path) -> None:
    """An attestor that finds the caller's pod hands it over typed, beside the selectors made of it."""
    _fake_stat(tmp_path, 45, 4000)
    peer = PeerCredentials(pid=45, uid=1000, gid=1000, start_time=4000)
    pod = Pod(uid="u-1", namespace="web", name="web-0", service_account="web", node_name="n")

    class _InPod:
        name = "k8s"

        async def attest(self, peer: PeerCredentials) -> Selectors:
            return (await self.attest_pod(peer))[0]

        async def attest_pod(self, peer: PeerCredentials) -> tuple[Selectors, Pod | None]:
            return frozenset({Selector("k8s", "pod-uid:u-1")}), pod

    result = await Attestation([_InPod()], proc_root=tmp_path).attest(peer)
    assert result.pod == pod
    assert result.selectors == {Selector("k8s", "pod-uid:u-1")}
