"""Long-running child processes a test or a person starts from a directory: spawn, find again, stop, read the log.

Each process ``NAME`` of a directory writes ``NAME.log`` and ``NAME.pid`` there. The pid file lets another process
stop what this one started (``tools/controlplane down DIR``); a pid is believed only while that process is alive,
not a zombie, and names the directory on its command line, so a recycled pid is never signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

__all__ = ["Supervisor"]


class Supervisor:
    """The processes started from ``directory``; ``detach`` puts each in a session of its own (outlives us)."""

    def __init__(self, directory: Path, *, detach: bool = False) -> None:
        self.directory = directory
        self._detach = detach
        #: The processes this instance started, by name (others it finds through their pid files).
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        #: The command line each process was last started with, by name.
        self.argv: dict[str, list[str]] = {}

    def spawn(self, name: str, argv: list[str]) -> None:
        """Start ``argv`` as ``name``, its output in ``name.log`` and its pid in ``name.pid``."""
        self.argv[name] = argv
        with (self.directory / f"{name}.log").open("wb") as log:
            child = subprocess.Popen(  # noqa: S603 - our own binaries and flags
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                start_new_session=self._detach,
            )
        self.children[name] = child
        (self.directory / f"{name}.pid").write_text(f"{child.pid}\n")

    def pid(self, name: str) -> int | None:
        """The pid in ``name.pid`` if that process is alive and is ours (its command line names our directory)."""
        try:
            pid = int((self.directory / f"{name}.pid").read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, ValueError, IndexError):
            return None
        return pid if str(self.directory).encode() in cmdline and state != "Z" else None

    def exited(self) -> tuple[str, int] | None:
        """A child of this instance that has exited, with its status, if any."""
        for name, child in self.children.items():
            if child.poll() is not None:
                return name, child.returncode
        return None

    def stop(self, name: str, *, timeout: float, forget: bool = False) -> None:
        """SIGTERM ``name``, SIGKILL it after ``timeout`` s; with ``forget``, remove its pid file too."""
        pid = self.pid(name)
        if pid is not None:
            _signal(pid, signal.SIGTERM)
            if not self._wait_exit(name, pid, timeout):
                _signal(pid, signal.SIGKILL)
                self._wait_exit(name, pid, timeout)
        self.children.pop(name, None)
        if forget:
            (self.directory / f"{name}.pid").unlink(missing_ok=True)

    def log_tail(self, name: str, lines: int = 30) -> str:
        log = self.directory / f"{name}.log"
        try:
            return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
        except OSError as err:
            return f"({log}: {err})"

    def _wait_exit(self, name: str, pid: int, timeout: float) -> bool:
        child = self.children.get(name)
        if child is not None:
            try:
                child.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        # Not our child (another process started it): it is reaped by init, so poll until it is gone.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pid(name) is None:
                return True
            time.sleep(0.05)
        return False


def _signal(pid: int, signum: signal.Signals) -> None:
    # It may have exited since we looked.
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
