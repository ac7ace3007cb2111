"""A PostgreSQL server of one test's own, which the test may stop and start again (the session's is shared).

Same binaries and the same account rules as :mod:`sigil_testing.postgres`; the difference is that the data directory
and the port stay the test's, so that :meth:`PrivatePostgres.stop` and :meth:`PrivatePostgres.start` are a real
database restart under whatever is connected to it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from sigil_testing.network import free_port
from sigil_testing.postgres import PostgresUnavailableError, server_account, server_bin_dir

__all__ = ["PrivatePostgres"]


class PrivatePostgres:
    """``with PrivatePostgres() as pg:``: initialised and started; ``pg.admin_dsn``, ``pg.url(name)``."""

    def __init__(self) -> None:
        self._bin = server_bin_dir()
        self._account = server_account()
        self._root = Path(tempfile.mkdtemp(prefix="sigil-pgp-"))
        self._data = self._root / "data"
        self._sockets = self._root / "run"
        self.port = free_port()
        self.admin_dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of ``database`` on this server."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def __enter__(self) -> PrivatePostgres:
        self._sockets.mkdir()
        if self._account is not None:
            for path in (self._root, self._sockets):
                os.chown(path, self._account.pw_uid, self._account.pw_gid)
        try:
            self._run(
                "initdb", "-D", str(self._data), "-U", "postgres", "--auth=trust", "-E", "UTF8"
            )
            self.start()
        except BaseException:
            shutil.rmtree(self._root, ignore_errors=True)
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self._run("pg_ctl", "-D", str(self._data), "-m", "immediate", "-w", "stop")
        except PostgresUnavailableError:
            pass  # already stopped by the test
        finally:
            shutil.rmtree(self._root, ignore_errors=True)

    def start(self) -> None:
        """Start the server (again) on the same port and data directory, and wait until it accepts connections."""
        options = f"-h 127.0.0.1 -p {self.port} -k {self._sockets} -F -c max_connections=100"
        log = str(self._root / "server.log")
        self._run(
            "pg_ctl", "-D", str(self._data), "-l", log, "-o", options, "-w", "-t", "60", "start"
        )

    def stop(self) -> None:
        """Stop the server the way an operator's restart does (``-m fast``: sessions are terminated)."""
        self._run("pg_ctl", "-D", str(self._data), "-m", "fast", "-w", "-t", "60", "stop")

    def freeze(self) -> None:
        """SIGSTOP the server and its backends: connections stay open and nothing answers (a paused host)."""
        for pid in self._processes():
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT what :meth:`freeze` stopped."""
        for pid in self._processes():
            os.kill(pid, signal.SIGCONT)

    def _processes(self) -> list[int]:
        """The postmaster (from its pid file) and its children (from /proc)."""
        postmaster = int((self._data / "postmaster.pid").read_text().split()[0])
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[1]) == postmaster:
                children.append(int(stat.parent.name))
        return [postmaster, *children]

    def _run(self, tool: str, *args: str) -> None:
        account = self._account
        done = subprocess.run(  # noqa: S603 - the server's own binaries, our own paths
            [str(self._bin / tool), *args],
            capture_output=True,
            text=True,
            check=False,
            user=None if account is None else account.pw_uid,
            group=None if account is None else account.pw_gid,
            env={**os.environ, "LC_ALL": "C.UTF-8"},
        )
        if done.returncode != 0:
            raise PostgresUnavailableError(
                f"{tool} failed ({done.returncode}): {done.stdout}{done.stderr}"
            )
