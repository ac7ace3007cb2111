"""bench/propagate.py's cluster layout: issuer, agent and enforcers as separate processes, as a node runs them.

``sigil-server run`` and ``sigil-agent run`` are started with the commands an operator uses (a config file each,
the issuer's policy directory in its ``policy`` section, a join token in a 0600 file). The enforcers run in
``WORKERS`` processes of this same file (``python bench/_policy_processes.py COUNT ENDPOINT``), each holding
``COUNT`` ``AgentPolicySource``s (one grpclib connection each) feeding an ``Authorizer``, and freezing its start-up
heap once every source holds the first revision, as the enforcer's proxy does after its start.

A worker prints one line per snapshot applied: ``INDEX REVISION SECONDS HELD``, the time read from
``CLOCK_MONOTONIC``, which is one clock for every process of the host, so the parent subtracts its own reading from
before the admin call and the delay is exact across processes; ``HELD`` is how many policies that enforcer then
held (what the agent's stream carries to it, each snapshot whole). The lines a worker's loop produced in one turn
go to the pipe in one write: until this was done by hand, stdout wrote each line through under PYTHONUNBUFFERED
(set where these figures are taken), and those writes were about a sixth of the workers' CPU, counted as the enforcers'
(both methods side by side on the same enforcer code, two runs of 50 changes each on a loaded machine: enforcers
66.6 and 62.2 ms CPU per change and bench 13.8 and 13.8 writing each line, 52.4 and 55.6 and 5.8 and 6.4 writing
each turn's lines at once). CPU time is read from ``/proc/PID/stat`` for every process
(issuer, agent, workers, and this one, which makes the admin calls): the sum over a change is its cost. What the
issuer sent the agent is read from its ``/metrics`` (``sigil_policy_answers_total`` and
``sigil_policy_answer_bytes_total``, by kind: ``full`` or ``delta``), over TLS verified with the trust bundle.

The agent attests each enforcer by uid only (no Kubernetes here), so an enforcer is "not in a pod" and gets the
cluster policies whose selectors match an empty label set; the change is such a policy
(``ClusterAuthorizationPolicy`` with ``{}`` selectors), which every enforcer receives and compiles.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from _stacks import cpu_seconds
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from sigil_testing.network import free_port

from sigil.ca.spiffe_id import TrustDomain
from sigil.enforcer.authorizer import Authorizer
from sigil.enforcer.metrics import EnforcerMetrics
from sigil.enforcer.policy.decision import Target
from sigil.enforcer.policy.receiver import AgentPolicies, AgentPolicySource
from sigil.enforcer.policy.store import PolicyStore
from sigil.issuer.admin.client import SocketAdmin, server_listening
from sigil.kit import freeze_startup_heap

__all__ = ["WORKERS", "PolicyProcesses", "monotonic"]

#: Enforcer processes; the enforcers are shared among them evenly.
WORKERS = 4
_START_TIMEOUT = 120.0


def monotonic() -> float:
    """CLOCK_MONOTONIC in seconds: the same clock in every process of the host."""
    return time.clock_gettime(time.CLOCK_MONOTONIC)


@dataclass
class PolicyProcesses:
    """``sigil-server run``, ``sigil-agent run`` and the enforcer workers, state and logs in ``directory``."""

    directory: Path
    policies: Path
    enforcers: int
    #: arrived[enforcer][revision]: when that enforcer had applied (and compiled) that revision.
    arrived: list[dict[int, float]] = field(default_factory=list)
    #: held[enforcer]: how many policies that enforcer held after the last snapshot it applied.
    held: list[int] = field(default_factory=list)
    _processes: list[asyncio.subprocess.Process] = field(default_factory=list)
    _readers: list[asyncio.Task[None]] = field(default_factory=list)
    _moved: asyncio.Event = field(default_factory=asyncio.Event)
    _port: int = 0

    @property
    def admin_socket(self) -> Path:
        return self.directory / "admin.sock"

    @property
    def pids(self) -> list[int]:
        """Every process of the layout, this one included."""
        return [os.getpid(), *(p.pid for p in self._processes)]

    def cpu(self) -> dict[str, float]:
        """CPU seconds each part has used so far: ``bench`` (this process), ``issuer``, ``agent``, ``enforcers``."""
        used = [cpu_seconds(pid) for pid in self.pids]
        return {
            "bench": used[0],
            "issuer": used[1],
            "agent": used[2],
            "enforcers": sum(used[3:]),
        }

    async def feed_answers(self) -> dict[str, float]:
        """What the issuer's policy feed answered so far: ``full``/``delta`` answers and ``full_bytes``/``delta_bytes``."""
        context = ssl.create_default_context(cafile=str(self.directory / "bundle.pem"))
        context.check_hostname = (
            False  # the server's certificate names its SPIFFE ID, not 127.0.0.1
        )
        url = f"https://127.0.0.1:{self._port}/metrics"

        def read() -> str:
            with urllib.request.urlopen(url, context=context, timeout=10) as answer:
                return str(answer.read().decode())

        found = {"full": 0.0, "delta": 0.0, "full_bytes": 0.0, "delta_bytes": 0.0}
        for family in text_string_to_metric_families(await asyncio.to_thread(read)):
            for sample in family.samples:
                if sample.name == "sigil_policy_answers_total":
                    found[sample.labels["kind"]] = sample.value
                elif sample.name == "sigil_policy_answer_bytes_total":
                    found[sample.labels["kind"] + "_bytes"] = sample.value
        return found

    async def _spawn(self, *argv: str, log: str) -> asyncio.subprocess.Process:
        with (self.directory / log).open("ab") as out:
            process = await asyncio.create_subprocess_exec(
                sys.executable, *argv, stdout=out, stderr=asyncio.subprocess.STDOUT
            )
        self._processes.append(process)
        return process

    async def start(self) -> None:
        """Issuer, agent, then the workers; returns once every enforcer holds the issuer's first revision."""
        port = self._port = free_port()
        server_config = self.directory / "server.yaml"
        server_config.write_text(
            json.dumps(
                {
                    "data_dir": str(self.directory / "server"),
                    "trust_domain": "example.org",
                    "server": {
                        "listen": f"127.0.0.1:{port}",
                        "admin_socket": str(self.admin_socket),
                        "log_level": "warning",
                    },
                    # The directory polled at the default interval (1 s), as a cluster's issuer does: an admin
                    # apply is published at once either way; the single-process layout's 50 ms poll costs the
                    # issuer about 75 ms of CPU per second of 1,000 policies, idle, which would be counted in
                    # every change's CPU time here.
                    "policy": {"directory": str(self.policies), "watch_crds": False},
                }
            )
        )
        await self._spawn(
            "-m", "sigil.issuer.cli", "--config", str(server_config), "run", log="server.log"
        )
        async with asyncio.timeout(_START_TIMEOUT):
            while not server_listening(self.admin_socket):  # noqa: ASYNC110 - another process: nothing to await
                await asyncio.sleep(0.1)
        async with SocketAdmin(self.admin_socket) as admin:
            token = await admin.generate_token(600)
            bundle = await admin.bundle("pem")
        token_file = self.directory / "token"
        token_file.touch(mode=0o600)
        token_file.write_text(token["token"])
        (self.directory / "bundle.pem").write_bytes(bundle)
        socket = self.directory / "agent.sock"
        agent_config = self.directory / "agent.yaml"
        agent_config.write_text(
            json.dumps(
                {
                    "trust_domain": "example.org",
                    "data_dir": str(self.directory / "agent"),
                    "agent": {
                        "socket_path": str(socket),
                        "issuer_url": f"https://127.0.0.1:{port}",
                        "trust_bundle_path": str(self.directory / "bundle.pem"),
                        "attestation": {"method": "join_token"},
                        "log_level": "warning",
                    },
                }
            )
        )
        await self._spawn(
            *("-m", "sigil.node_agent.cli", "run", "--config", str(agent_config)),
            *("--join-token-file", str(token_file)),
            log="agent.log",
        )
        async with asyncio.timeout(_START_TIMEOUT):
            while not socket.exists():  # noqa: ASYNC110 - as above
                await asyncio.sleep(0.1)
        self.arrived = [{} for _ in range(self.enforcers)]
        self.held = [0] * self.enforcers
        shares = [
            self.enforcers // WORKERS + (n < self.enforcers % WORKERS) for n in range(WORKERS)
        ]
        first = 0
        for number, count in enumerate(shares):
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                __file__,
                str(count),
                f"unix://{socket}",
                stdout=asyncio.subprocess.PIPE,
                stderr=(self.directory / f"worker-{number}.log").open("ab"),
            )
            self._processes.append(process)
            self._readers.append(asyncio.create_task(self._read(process, first)))
            first += count
        async with asyncio.timeout(_START_TIMEOUT):
            await self.wait_past(0)

    async def _read(self, process: asyncio.subprocess.Process, first: int) -> None:
        assert process.stdout is not None
        async for line in process.stdout:
            index, revision, seconds, held = line.split()
            self.arrived[first + int(index)].setdefault(int(revision), float(seconds))
            self.held[first + int(index)] = int(held)
            self._moved.set()

    async def wait_past(self, revision: int) -> int:
        """Wait until every enforcer holds a revision above ``revision``; the lowest such revision held."""
        while True:
            newer = [[r for r in seen if r > revision] for seen in self.arrived]
            if all(newer):
                return min(min(found) for found in newer)
            self._moved.clear()
            await self._moved.wait()

    def delays(self, revision: int, started: float) -> list[float]:
        """Each enforcer's delay (ms) from ``started`` until it held ``revision`` or a later one."""
        return [
            (min(t for r, t in seen.items() if r >= revision) - started) * 1000
            for seen in self.arrived
        ]

    async def aclose(self) -> None:
        """SIGTERM to every process, newest first (each drains), then their readers."""
        for process in reversed(self._processes):
            if process.returncode is None:
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), 20)
                except TimeoutError:
                    process.kill()
                    await process.wait()
        for reader in self._readers:
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)


async def _worker(count: int, endpoint: str) -> None:
    """``count`` enforcers on ``endpoint``, a line on stdout per snapshot applied, until SIGTERM."""
    import signal

    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    out = sys.stdout
    loop = asyncio.get_running_loop()
    pending: list[str] = []

    def flush() -> None:
        out.write("".join(pending))
        out.flush()
        pending.clear()

    def recorder(index: int, store: PolicyStore) -> Callable[[AgentPolicies], None]:
        def record(applied: AgentPolicies) -> None:
            # The time is taken here; the line reaches the benchmark with the others that this turn of the loop
            # applied, one write to the pipe for them all rather than one per enforcer (the writes were about
            # a tenth of these processes' CPU per change, counted as the enforcers'). The lines are held in a
            # list, not in stdout's buffer: under PYTHONUNBUFFERED (or -u) stdout writes through, so each
            # line was a write(2) of its own after all, and a write that wakes the reader costs tens of
            # microseconds here -- about a sixth of these processes' CPU per change, and a delay added to every
            # enforcer after it in the same turn.
            if not pending:
                loop.call_soon(flush)
            now = monotonic()
            pending.append(f"{index} {applied.revision} {now:.6f} {len(store.current.accepted)}\n")

        return record

    sources = [AgentPolicySource(endpoint) for _ in range(count)]
    for index, source in enumerate(sources):
        # Subscribed first, so a snapshot's time is taken after the Authorizer compiled it.
        Authorizer(
            trust_domain=TrustDomain("example.org"),
            target=Target("ns-000", {"app": "app-0"}),
            policies=source,
            metrics=EnforcerMetrics(CollectorRegistry()),
        )
        source.subscribe(recorder(index, source.store))
        await source.start()
    try:
        await asyncio.gather(*(s.wait_for_revision(1) for s in sources))
        freeze_startup_heap()
        await stopping.wait()
    finally:
        for source in sources:
            await source.aclose()


if __name__ == "__main__":
    import logging

    # As in the single process: the benchmark measures the work, not the enforcers' info lines.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    asyncio.run(_worker(int(sys.argv[1]), sys.argv[2]))
