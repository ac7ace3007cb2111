"""Who is on the other end of a Workload API connection, taken from the kernel when the connection is accepted.

The Workload API authenticates callers out of band (SPIFFE Workload Endpoint, section 4): the kernel tells us the
pid, uid and gid of the process that called ``connect()`` (``SO_PEERCRED``). A pid is only a name that the kernel
recycles, so, as SPIRE's peertracker does, we record the process start time (field 22 of ``/proc/PID/stat``) at
accept and check it again once attestation has read ``/proc``: if the process is gone or the pid now names a
younger process, everything attestation read may describe someone else, and the call is refused.

Reads of ``/proc`` are served from kernel memory, so the few small reads here do not block the event loop. They
go through :func:`read_proc_file` (``os.open``/``os.read``, no ``pathlib`` or buffered file object), as they are on
the path of every Workload API connection and call.
"""

from __future__ import annotations

import os
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

from sigil.node_agent.errors import PeerGoneError

__all__ = [
    "PROC_ROOT",
    "PeerCredentials",
    "capture_peer",
    "ensure_peer_alive",
    "process_start_time",
    "read_proc_file",
]

PROC_ROOT = Path("/proc")

# struct ucred { pid_t pid; uid_t uid; gid_t gid; } -- three 32-bit integers on Linux.
_UCRED = struct.Struct("3i")
# Field 22 of /proc/PID/stat is starttime; fields after comm are counted from 3 (state).
_START_TIME_INDEX = 22 - 3
# One read takes a whole /proc/PID/stat (under 1 KiB) or /proc/PID/status (about 1.5 KiB); the next sees EOF.
_READ_SIZE = 4096


@dataclass(frozen=True, slots=True)
class PeerCredentials:
    """The calling process as the kernel named it at accept: pid, uid, gid and the pid's start time."""

    pid: int
    uid: int
    gid: int
    start_time: int


def read_proc_file(pid: int, name: str, *, proc_root: Path = PROC_ROOT) -> bytes:
    """The whole of ``/proc/PID/NAME``; raises OSError as ``open``/``read`` do."""
    fd = os.open(f"{proc_root}/{pid}/{name}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = os.read(fd, _READ_SIZE)
        while chunk := os.read(fd, _READ_SIZE):
            data += chunk
    finally:
        os.close(fd)
    return data


def process_start_time(pid: int, *, proc_root: Path = PROC_ROOT) -> int:
    """The start time of ``pid`` in clock ticks since boot; raises PeerGoneError when there is no such process."""
    try:
        data = read_proc_file(pid, "stat", proc_root=proc_root)
    except FileNotFoundError as err:
        raise PeerGoneError(pid, "the process has exited") from err
    except ProcessLookupError as err:
        raise PeerGoneError(pid, "the process has exited") from err
    except OSError as err:
        raise PeerGoneError(pid, f"cannot read its /proc entry ({err.strerror})") from err
    # comm (field 2) is in parentheses and may itself hold spaces and ')', so fields are counted after the
    # last ')' (proc(5)).
    close = data.rfind(b")")
    fields = data[close + 1 :].split()
    if close < 0 or len(fields) <= _START_TIME_INDEX:
        raise PeerGoneError(pid, "its /proc/PID/stat is malformed")
    try:
        return int(fields[_START_TIME_INDEX])
    except ValueError as err:
        raise PeerGoneError(pid, "its /proc/PID/stat is malformed") from err


def capture_peer(sock: socket.socket, *, proc_root: Path = PROC_ROOT) -> PeerCredentials:
    """Read SO_PEERCRED from an accepted Unix socket and the peer's start time; PeerGoneError if it is gone."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    except OSError as err:
        raise PeerGoneError(0, f"cannot read the peer's credentials ({err.strerror})") from err
    pid, uid, gid = _UCRED.unpack(raw)
    if pid <= 0:
        # The kernel reports pid 0 when the peer lives in a pid namespace we cannot see.
        raise PeerGoneError(pid, "the kernel reported no pid for the peer")
    return PeerCredentials(
        pid=pid, uid=uid, gid=gid, start_time=process_start_time(pid, proc_root=proc_root)
    )


def ensure_peer_alive(peer: PeerCredentials, *, proc_root: Path = PROC_ROOT) -> None:
    """Raise PeerGoneError unless ``peer.pid`` still names the process that connected."""
    if process_start_time(peer.pid, proc_root=proc_root) != peer.start_time:
        raise PeerGoneError(peer.pid, "the pid was reused by another process")
