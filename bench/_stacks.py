"""Sigil as two child processes, and the go-spiffe probes bench/spire.py runs against either agent.

sigil-server and sigil-agent are started with the commands an operator uses, on the embedded defaults (SQLite, trust
domain example.org, state in one directory), so the benchmark compares processes with processes, as SPIRE runs.
The probes run our go-spiffe program (tools/spiffe-peer) as this uid with a chosen gid: a new gid is a new
workload to both agents' ``unix`` attestors.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sigil_testing.network import free_port
from sigil_testing.peers import PeerTools, go_spiffe_argv

from sigil.issuer.admin.client import SocketAdmin, server_listening

__all__ = ["SigilStack", "cpu_seconds", "latency", "rss_kib", "seconds_until_svids"]


def rss_kib(pid: int) -> int:
    """The resident set size of process ``pid`` in KiB (``VmRSS``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time process ``pid`` has used so far (``/proc/PID/stat`` fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _x509(tools: PeerTools, address: str, gid: int) -> dict[str, Any] | None:
    """go-spiffe's X.509 check as this uid with ``gid``; None while the agent has no identity for it yet."""
    done = subprocess.run(  # noqa: S603 - our own program
        go_spiffe_argv(tools, "check", address, "-x509-only", "-timeout=60s"),
        group=gid,
        extra_groups=[],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        if "PermissionDenied" in done.stderr:
            return None
        raise RuntimeError(done.stderr)
    report: dict[str, Any] = json.loads(done.stdout)["x509"]
    return report


def seconds_until_svids(
    tools: PeerTools, address: str, gid: int = 0, *, svids: int = 1, within: float = 120
) -> float:
    """Seconds until the workload with ``gid`` holds ``svids`` verified SVIDs (asked again every 20 ms)."""
    started = time.perf_counter()
    while time.perf_counter() - started < within:
        report = _x509(tools, address, gid)
        if report is not None and report["svids"] >= svids:
            return time.perf_counter() - started
        time.sleep(0.02)
    raise RuntimeError(f"no {svids} SVID(s) at {address} for gid {gid} within {within} s")


def latency(tools: PeerTools, address: str, samples: int) -> dict[str, float]:
    """FetchX509SVID first-response figures (ms) with 1,000 streams held open (spiffe-peer ``latency``)."""
    argv = go_spiffe_argv(tools, "latency", address, "-streams=1000", f"-samples={samples}")
    done = subprocess.run(  # noqa: S603 - our own program
        [*argv, "-timeout=120s"], capture_output=True, text=True, check=True
    )
    figures: dict[str, float] = json.loads(done.stdout)
    return figures


class SigilStack:
    """``sigil-server run`` and ``sigil-agent run`` as child processes, state and logs in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.socket = directory / "agent.sock"
        self._env = {
            **os.environ,
            "SIGIL_DATA_DIR": str(directory),
            "SIGIL_TRUST_DOMAIN": "example.org",
        }
        self._processes: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"unix://{self.socket}"

    @property
    def server_pid(self) -> int:
        return self._processes[0].pid

    @property
    def agent_pid(self) -> int:
        return self._processes[1].pid

    def _spawn(self, *argv: str, log: str) -> None:
        with (self.directory / log).open("ab") as out:
            self._processes.append(
                subprocess.Popen(  # noqa: S603 - our own commands
                    [sys.executable, "-m", *argv],
                    env=self._env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )

    async def start(self) -> tuple[SocketAdmin, str]:
        """Server, a join token (in a 0600 file), agent: the admin client and the agent's SPIFFE ID."""
        self.directory.mkdir(parents=True, exist_ok=True)
        admin_socket = self.directory / "admin.sock"
        self._spawn(
            "sigil.issuer.cli", "--listen", f"127.0.0.1:{self.port}", "run", log="server.log"
        )
        # Another process: there is nothing to wait on but its socket.
        while not server_listening(admin_socket):  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        admin = SocketAdmin(admin_socket)
        token = await admin.generate_token(600)
        token_file = self.directory / "token"
        token_file.touch(mode=0o600)
        token_file.write_text(token["token"])
        bundle = self.directory / "bundle.pem"
        bundle.write_bytes(await admin.bundle("pem"))
        self._spawn(
            *(
                "sigil.node_agent.cli",
                "run",
                "--issuer-url",
                self.url,
                "--socket",
                str(self.socket),
            ),
            *("--trust-bundle", str(bundle), "--join-token-file", str(token_file)),
            log="agent.log",
        )
        while not self.socket.exists():  # noqa: ASYNC110 - as above
            await asyncio.sleep(0.1)
        return admin, str(token["agent_id"])

    def stop(self) -> None:
        """SIGTERM to the agent, then the server; each drains."""
        for process in reversed(self._processes):
            process.terminate()
            process.wait(15)
