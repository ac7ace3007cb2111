"""The ``unix`` attestor: the caller's user and groups, and optionally its executable and that file's SHA-256.

Selectors follow SPIRE's unix workload attestor
(https://github.com/spiffe/spire/blob/main/doc/plugin_agent_workloadattestor_unix.md): ``unix:uid``,
``unix:user``, ``unix:gid``, ``unix:group``, ``unix:supplementary_gid``, ``unix:supplementary_group``, and with
``discover_workload_path`` also ``unix:path`` and ``unix:sha256``.

Name lookups may go through NSS (LDAP, SSSD) and hashing reads a whole file, so that work runs in an executor. The
names are kept for ``names_ttl`` (30 s by default, as nscd keeps them for minutes): a workload's calls then attest
without leaving the event loop, which takes a thread hand-off (a tenth of a millisecond idle, milliseconds on a busy
node) off every Workload API call, and a renamed user or group is seen within the TTL. ``/proc/PID/status`` is read
inline, as ``peer.py`` reads ``/proc/PID/stat``: it is served from kernel memory.
The executable is opened through ``/proc/PID/exe``, which reaches the file the process runs even inside another
mount namespace, where the path ``readlink`` returns would name something else on the host.
"""

from __future__ import annotations

import asyncio
import grp
import hashlib
import os
import pwd
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from sigil.node_agent.attestation.peer import PROC_ROOT, PeerCredentials, read_proc_file
from sigil.node_agent.attestation.selectors import Selector, Selectors
from sigil.node_agent.errors import AttestationError

__all__ = ["UnixAttestor", "UnixAttestorSettings"]

_log = structlog.get_logger(__name__)
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True, kw_only=True)
class UnixAttestorSettings:
    """What the unix attestor reports. ``workload_size_limit`` bounds the file hashed for ``unix:sha256``."""

    discover_workload_path: bool = False
    workload_size_limit: int = 256 * 1024 * 1024
    proc_root: Path = PROC_ROOT
    #: Seconds a looked-up user or group name is reused (0: look it up on every call).
    names_ttl: float = 30.0

    def __post_init__(self) -> None:
        if self.workload_size_limit <= 0:
            raise ValueError("workload_size_limit must be positive")
        if self.names_ttl < 0:
            raise ValueError("names_ttl must not be negative")


class UnixAttestor:
    """Selectors from the caller's credentials and, optionally, its executable."""

    name = "unix"

    def __init__(
        self,
        settings: UnixAttestorSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings or UnixAttestorSettings()
        self._clock = clock
        # ("user" | "group", id) -> (name or None, when it was looked up)
        self._names: dict[tuple[str, int], tuple[str | None, float]] = {}

    async def attest(self, peer: PeerCredentials) -> Selectors:
        """The unix selectors of ``peer``."""
        if self._settings.discover_workload_path:
            return await asyncio.to_thread(self._attest_blocking, peer)
        groups = _supplementary_gids(self._settings.proc_root, peer.pid)
        wanted = [("user", peer.uid), ("group", peer.gid), *(("group", g) for g in groups)]
        now = self._clock()
        if any(self._stale(key, now) for key in wanted):
            await asyncio.to_thread(self._look_up, wanted, now)
        return frozenset(self._selectors(peer, groups))

    def _attest_blocking(self, peer: PeerCredentials) -> Selectors:
        groups = _supplementary_gids(self._settings.proc_root, peer.pid)
        wanted = [("user", peer.uid), ("group", peer.gid), *(("group", g) for g in groups)]
        self._look_up([k for k in wanted if self._stale(k, self._clock())], self._clock())
        return frozenset(self._selectors(peer, groups) | self._executable_selectors(peer.pid))

    def _stale(self, key: tuple[str, int], now: float) -> bool:
        known = self._names.get(key)
        return known is None or now - known[1] >= self._settings.names_ttl

    def _look_up(self, keys: list[tuple[str, int]], now: float) -> None:
        """Blocking (NSS): fetch the names of ``keys`` into the cache, stamped ``now``."""
        for kind, number in keys:
            name = _user_name(number) if kind == "user" else _group_name(number)
            self._names[(kind, number)] = (name, now)

    def _selectors(self, peer: PeerCredentials, groups: list[int]) -> set[Selector]:
        found = {Selector("unix", f"uid:{peer.uid}"), Selector("unix", f"gid:{peer.gid}")}
        user = self._names[("user", peer.uid)][0]
        if user is not None:
            found.add(Selector("unix", f"user:{user}"))
        group = self._names[("group", peer.gid)][0]
        if group is not None:
            found.add(Selector("unix", f"group:{group}"))
        for gid in groups:
            found.add(Selector("unix", f"supplementary_gid:{gid}"))
            name = self._names[("group", gid)][0]
            if name is not None:
                found.add(Selector("unix", f"supplementary_group:{name}"))
        return found

    def _executable_selectors(self, pid: int) -> set[Selector]:
        exe = self._settings.proc_root / str(pid) / "exe"
        try:
            path = os.readlink(exe)
            with exe.open("rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                if size > self._settings.workload_size_limit:
                    # Leaving unix:sha256 out can only match fewer entries, never more, so it is safe.
                    _log.warning(
                        "executable larger than workload_size_limit; no unix:sha256 selector",
                        pid=pid,
                        path=path,
                        size=size,
                        limit=self._settings.workload_size_limit,
                    )
                    return {Selector("unix", f"path:{path}")}
                digest = hashlib.sha256()
                while chunk := handle.read(_CHUNK):
                    digest.update(chunk)
        except OSError as err:
            raise AttestationError(pid, f"cannot read its executable ({err.strerror})") from err
        return {Selector("unix", f"path:{path}"), Selector("unix", f"sha256:{digest.hexdigest()}")}


def _user_name(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def _group_name(gid: int) -> str | None:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return None


def _supplementary_gids(proc_root: Path, pid: int) -> list[int]:
    """The ``Groups:`` line of /proc/PID/status (empty when unreadable: the selectors are optional)."""
    try:
        status = read_proc_file(pid, "status", proc_root=proc_root)
    except OSError:
        return []
    # Name: is the first line, so Groups: always follows a newline (proc(5)).
    start = status.find(b"\nGroups:")
    if start < 0:
        return []
    start += len(b"\nGroups:")
    end = status.find(b"\n", start)
    line = status[start:] if end < 0 else status[start:end]
    return [int(g) for g in line.split() if g.isdigit()]
