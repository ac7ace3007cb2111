"""SPIRE, the SPIFFE reference implementation, run for real on loopback: one server and one agent, at its defaults.

The server keeps its state in SQLite (SPIRE's embedded default) and attests agents by join token; the agent
attests workloads with the ``unix`` attestor, so a test process is entitled by ``unix:uid:<its uid>``. Nothing
is tuned: the settings written here are the ones SPIRE needs to run at all (addresses, paths, plugins), plus a
federation bundle endpoint when a test asks for one. The CLI (``spire-server entry create`` and friends, over the
server's admin socket) is how tests drive it, as an operator would.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from sigil_testing.network import free_ports
from sigil_testing.peers import PeerTools

__all__ = ["SpireAgent", "SpireError", "SpireServer", "my_uid_selector"]

_READY_WITHIN = 60.0


class SpireError(AssertionError):
    """A SPIRE process would not start or a CLI command failed; the message quotes SPIRE."""


class _Process:
    """One SPIRE process logging to a file in its directory; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, directory: Path, name: str) -> None:
        self.directory = directory
        self.name = name
        self.log = directory / f"{name}.log"
        self._process: subprocess.Popen[bytes] | None = None

    def spawn(self, argv: list[str], environment: Mapping[str, str] | None = None) -> None:
        env = {**os.environ, **(environment or {})}
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(  # noqa: S603 - SPIRE, our arguments
                argv, stdout=log, stderr=subprocess.STDOUT, env=env
            )

    def wait_healthy(self, check: list[str]) -> None:
        deadline = time.monotonic() + _READY_WITHIN
        while True:
            if self._process is not None and self._process.poll() is not None:
                raise SpireError(f"{self.name} exited {self._process.returncode}:\n{self.tail()}")
            done = subprocess.run(check, capture_output=True, check=False)  # noqa: S603 - SPIRE, our arguments
            if done.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise SpireError(
                    f"{self.name} not healthy within {_READY_WITHIN} s:\n{self.tail()}"
                )
            time.sleep(0.2)

    @property
    def pid(self) -> int:
        assert self._process is not None, f"{self.name} is not running"
        return self._process.pid

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class SpireServer:
    """``with SpireServer(directory, tools=...) as server:`` a running spire-server for ``trust_domain``.

    ``federation=True`` also serves SPIRE's bundle endpoint (``https_spiffe``, at ``/``) on
    :attr:`federation_port`. ``environment`` is added to the process's (``SSL_CERT_FILE``: the roots SPIRE
    trusts for ``https_web`` peers).
    """

    def __init__(
        self,
        directory: Path,
        *,
        tools: PeerTools,
        trust_domain: str = "spire.test",
        federation: bool = False,
        environment: Mapping[str, str] | None = None,
    ) -> None:
        self.directory = directory
        self.trust_domain = trust_domain
        self.socket = directory / "server.sock"
        self.port, self.federation_port = free_ports(2)
        self._tools = tools
        self._federation = federation
        self._environment = environment
        self._process = _Process(directory, "spire-server")

    def config(self) -> str:
        """The server's configuration (HCL)."""
        data = self.directory / "data"
        endpoint = (
            "federation {\n  bundle_endpoint {\n"
            f'    address = "127.0.0.1"\n    port = {self.federation_port}\n  }}\n}}'
            if self._federation
            else ""
        )
        return f"""server {{
  bind_address = "127.0.0.1"
  bind_port = "{self.port}"
  socket_path = "{self.socket}"
  trust_domain = "{self.trust_domain}"
  data_dir = "{data}"
  log_level = "INFO"
  {endpoint}
}}
plugins {{
  DataStore "sql" {{
    plugin_data {{
      database_type = "sqlite3"
      connection_string = "{data}/datastore.sqlite3"
    }}
  }}
  KeyManager "disk" {{
    plugin_data {{
      keys_path = "{data}/keys.json"
    }}
  }}
  NodeAttestor "join_token" {{
    plugin_data {{}}
  }}
}}
"""

    def __enter__(self) -> SpireServer:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start the server (again, on the same state) and wait until its health check passes."""
        self.directory.mkdir(parents=True, exist_ok=True)
        conf = self.directory / "server.conf"
        conf.write_text(self.config())
        self._process.spawn(
            [str(self._tools.spire_server), "run", "-config", str(conf)], self._environment
        )
        self._process.wait_healthy(
            [str(self._tools.spire_server), "healthcheck", "-socketPath", str(self.socket)]
        )

    def stop(self) -> None:
        self._process.stop()

    def cli(self, *args: str) -> str:
        """``spire-server ARGS -socketPath ...``: its stdout; :class:`SpireError` with its output if it fails."""
        command, *rest = args
        argv = [
            str(self._tools.spire_server),
            *command.split(),
            "-socketPath",
            str(self.socket),
            *rest,
        ]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)  # noqa: S603
        if done.returncode != 0:
            raise SpireError(f"spire-server {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done.stdout

    def cli_json(self, *args: str) -> Any:
        """``spire-server ARGS -output json``, parsed."""
        return json.loads(self.cli(*args, "-output", "json"))

    def join_token(self, agent_id: str) -> str:
        """A join token whose agent gets the alias ``agent_id`` (the parent of the entries a test creates)."""
        return str(self.cli_json("token generate", "-spiffeID", agent_id, "-ttl", "600")["value"])

    def create_entry(
        self, spiffe_id: str, *, parent_id: str, selectors: list[str], args: tuple[str, ...] = ()
    ) -> None:
        """A registration entry, as ``spire-server entry create`` makes it."""
        flags = [f"-selector={selector}" for selector in selectors]
        self.cli("entry create", "-spiffeID", spiffe_id, "-parentID", parent_id, *flags, *args)

    def bundle(self, fmt: str = "pem") -> str:
        """The server's own bundle, as ``spire-server bundle show -format FMT`` prints it."""
        return self.cli("bundle show", "-format", fmt)

    def federated_bundle(self, trust_domain: str) -> Any:
        """The bundle SPIRE holds for ``trust_domain`` (``bundle list -id``, as JSON), or None."""
        try:
            return self.cli_json("bundle list", "-id", f"spiffe://{trust_domain}")
        except SpireError as err:
            if "NotFound" in str(err) or "not found" in str(err):
                return None
            raise

    @property
    def pid(self) -> int:
        """The server's process ID (for its CPU time in bench/spire.py)."""
        return self._process.pid

    def endpoint_spiffe_id(self) -> str:
        """The SPIFFE ID the bundle endpoint presents in the ``https_spiffe`` profile."""
        return f"spiffe://{self.trust_domain}/spire/server"


class SpireAgent:
    """``with SpireAgent(directory, tools=..., server=..., join_token=...) as agent:`` a running spire-agent."""

    def __init__(
        self, directory: Path, *, tools: PeerTools, server: SpireServer, join_token: str
    ) -> None:
        self.directory = directory
        self.socket = directory / "agent.sock"
        self._tools = tools
        self._server = server
        self._join_token = join_token
        self._process = _Process(directory, "spire-agent")

    def __enter__(self) -> SpireAgent:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Bootstrap from the server's current bundle, attest with the join token, wait until healthy."""
        self.directory.mkdir(parents=True, exist_ok=True)
        bootstrap = self.directory / "bootstrap.pem"
        bootstrap.write_text(self._server.bundle())
        conf = self.directory / "agent.conf"
        conf.write_text(
            f"""agent {{
  data_dir = "{self.directory / "data"}"
  log_level = "INFO"
  server_address = "127.0.0.1"
  server_port = "{self._server.port}"
  socket_path = "{self.socket}"
  trust_bundle_path = "{bootstrap}"
  trust_domain = "{self._server.trust_domain}"
}}
plugins {{
  NodeAttestor "join_token" {{
    plugin_data {{}}
  }}
  KeyManager "disk" {{
    plugin_data {{
      directory = "{self.directory / "data"}"
    }}
  }}
  WorkloadAttestor "unix" {{
    plugin_data {{}}
  }}
}}
"""
        )
        argv = [str(self._tools.spire_agent), "run", "-config", str(conf)]
        self._process.spawn([*argv, "-joinToken", self._join_token])
        self._process.wait_healthy(
            [str(self._tools.spire_agent), "healthcheck", "-socketPath", str(self.socket)]
        )

    def stop(self) -> None:
        self._process.stop()

    @property
    def address(self) -> str:
        """The Workload API address a go-spiffe client is given."""
        return f"unix://{self.socket}"

    @property
    def pid(self) -> int:
        """The agent's process ID (for its memory in bench/spire.py)."""
        return self._process.pid


def my_uid_selector() -> str:
    """The ``unix`` attestor's selector for this process."""
    return f"unix:uid:{os.getuid()}"
