"""``sigil-server run`` as a real process of a test: written config, fixed port, started, killed with SIGKILL.

The crash drills need the server as an operator runs it, in a process of its own that a SIGKILL can stop between
any two instructions (an in-process server can only be closed politely). The port and the admin socket stay the
same across restarts, so that clients and the admin API reach the new process where they reached the old one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from sigil.ca.bundle import TrustBundle
from sigil.ca.spiffe_id import TrustDomain
from sigil.issuer.admin import SocketAdmin
from sigil_testing.network import free_port

__all__ = ["TRUST_DOMAIN", "ServerProcess"]

TRUST_DOMAIN = TrustDomain("example.org")


@dataclass
class ServerProcess:
    """One replica: its config in ``directory``, its data under ``directory/data``, its admin socket in ``sockets``.

    ``database_url`` empty means the embedded SQLite in the data directory (keys as files there); a PostgreSQL URL
    with ``kek`` means keys sealed in the database, shared by every replica on it.
    """

    directory: Path
    sockets: Path
    database_url: str = ""
    kek: Path | None = None
    #: Where the data directory is, when not ``directory/data`` (the disk drill puts it on a small tmpfs).
    data_root: Path | None = None
    port: int = field(default_factory=free_port)
    process: asyncio.subprocess.Process | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.data_root if self.data_root is not None else self.directory / "data"

    @property
    def key_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def admin_socket(self) -> Path:
        return self.sockets / f"{self.directory.name}.sock"

    @property
    def log(self) -> Path:
        return self.directory / "server.log"

    def _write_config(self) -> Path:
        ca: dict[str, str] = {}
        if self.database_url:
            ca["database_url"] = self.database_url
        if self.kek is not None:
            ca |= {"key_store": "database", "key_encryption_key_file": str(self.kek)}
        config = {
            "data_dir": str(self.data_dir),
            "trust_domain": TRUST_DOMAIN.name,
            "ca": ca,
            "server": {
                "listen": f"127.0.0.1:{self.port}",
                "admin_socket": str(self.admin_socket),
                "refresh_interval": "1s",
            },
        }
        path = self.directory / "sigil.yaml"
        self.directory.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(config))
        return path

    async def start(self, *, within: float = 60.0) -> None:
        """Start ``sigil-server --config FILE run`` and wait until its admin API says it is ready."""
        config = self._write_config()
        self.starts += 1
        with self.log.open("ab") as log:
            log.write(f"---- start {self.starts}\n".encode())
            log.flush()
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "sigil.issuer.cli",
                "--config",
                str(config),
                "run",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                env={k: v for k, v in os.environ.items() if not k.startswith("SIGIL_")},
            )
        try:
            async with asyncio.timeout(within):
                while not await self._ready():
                    if self.process.returncode is not None:
                        raise AssertionError(
                            f"sigil-server exited with {self.process.returncode} before it was ready:\n"
                            f"{self.log_tail()}"
                        )
                    await asyncio.sleep(0.05)
        except TimeoutError as err:
            raise AssertionError(
                f"sigil-server not ready within {within} s:\n{self.log_tail()}"
            ) from err

    async def _ready(self) -> bool:
        if not self.admin_socket.exists():
            return False
        try:
            async with SocketAdmin(self.admin_socket) as admin:
                ready, _ = await admin.ready()
        except (aiohttp.ClientError, OSError):
            return False
        return ready

    async def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed or closed."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL after ten seconds."""
        if self.process is None or self.process.returncode is not None:
            return
        self.process.terminate()
        try:
            await asyncio.wait_for(self.process.wait(), 10)
        except TimeoutError:
            await self.kill()

    def exited(self) -> int | None:
        """The exit status if the process ended by itself (a crash the drill did not cause)."""
        return None if self.process is None else self.process.returncode

    async def bundle(self) -> TrustBundle:
        """The bundle the server publishes, through its admin API."""
        async with SocketAdmin(self.admin_socket) as admin:
            return TrustBundle.parse_jwks(TRUST_DOMAIN, await admin.bundle("spiffe"))

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return f"(no {self.log})"
