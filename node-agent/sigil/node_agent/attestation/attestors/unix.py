"""The ``unix`` attestor: the caller's user and groups, and optionally its executable and that file's SHA-256.

Selectors follow SPIRE's unix workload attestor
(https://github.com/spiffe/spire/blob/main/doc/plugin_agent_workloadattestor_unix.md): ``unix:uid``,
``unix:user``, ``unix:gid``, ``unix:group``, ``unix:supplementary_gid``, ``unix:supplementary_group``, and with
``discover_workload_path`` also ``unix:path`` and ``unix:sha256``.

Name lookups may go through NSS (LDAP, SSSD) and hashing reads a whole file, so the work runs in an executor.
The executable is opened through ``/proc/PID/exe``, which reaches the file the process runs even inside another
mount namespace, where the path ``readlink`` returns would name something else on the host.
"""

from __future__ import annotations

import asyncio
import grp
import hashlib
import os
import pwd
from dataclasses import dataclass
from pathlib import Path

import structlog

from sigil.node_agent.attestation.peer import PROC_ROOT, PeerCredentials
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

    def __post_init__(self) -> None:
        if self.workload_size_limit <= 0:
            raise ValueError("workload_size_limit must be positive")


class UnixAttestor:
    """Selectors from the caller's credentials and, optionally, its executable."""

    name = "unix"

    def __init__(self, settings: UnixAttestorSettings | None = None) -> None:
        self._settings = settings or UnixAttestorSettings()

    async def attest(self, peer: PeerCredentials) -> Selectors:
        """The unix selectors of ``peer``."""
        return await asyncio.to_thread(self._attest_blocking, peer)

    def _attest_blocking(self, peer: PeerCredentials) -> Selectors:
        found = {Selector("unix", f"uid:{peer.uid}"), Selector("unix", f"gid:{peer.gid}")}
        user = _user_name(peer.uid)
        if user is not None:
            found.add(Selector("unix", f"user:{user}"))
        group = _group_name(peer.gid)
        if group is not None:
            found.add(Selector("unix", f"group:{group}"))
        for gid in _supplementary_gids(self._settings.proc_root, peer.pid):
            found.add(Selector("unix", f"supplementary_gid:{gid}"))
            name = _group_name(gid)
            if name is not None:
                found.add(Selector("unix", f"supplementary_group:{name}"))
        if self._settings.discover_workload_path:
            found |= self._executable_selectors(peer.pid)
        return frozenset(found)

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
        status = (proc_root / str(pid) / "status").read_text()
    except OSError:
        return []
    for line in status.splitlines():
        if line.startswith("Groups:"):
            return [int(g) for g in line.split()[1:] if g.isdigit()]
    return []
