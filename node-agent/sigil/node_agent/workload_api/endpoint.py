"""The Workload API endpoint: a Unix socket every workload on the node may connect to.

Authorization is by attestation, not by file permissions, so the socket is world-writable (mode 0777) as SPIRE
makes its public socket; the directory is created when missing. A stale socket left by a crashed agent is
removed, but a socket some live agent still answers on is left alone, and a non-socket file is never deleted.

Credentials are captured at accept (``_accept_hook``); each connection gets handlers bound to its caller: the
Workload API's, Envoy's SDS (``sds.py``), and Sigil's policy service when the server is given the agent's policies (``policies/service.py``). On
shutdown the listener closes, every running stream is cancelled and awaited, open connections are closed, and
the socket file is removed, so that clients see the stream end and reconnect to the next agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import structlog
from grpclib.const import Handler

from sigil.kit import Service
from sigil.node_agent.attestation.caller import CallerAttestor
from sigil.node_agent.attestation.peer import PROC_ROOT, capture_peer
from sigil.node_agent.errors import NodeAgentError, PeerGoneError, SocketError
from sigil.node_agent.grpc_edge import Caller
from sigil.node_agent.identity_source import IdentitySource
from sigil.node_agent.policies.mirror import PolicyMirror
from sigil.node_agent.policies.service import PolicyService
from sigil.node_agent.settings import DEFAULT_SOCKET_PATH
from sigil.node_agent.workload_api._accept_hook import AcceptHookServer
from sigil.node_agent.workload_api._deferred import DeferringCodec
from sigil.node_agent.workload_api.sds import SdsService
from sigil.node_agent.workload_api.service import WorkloadApiService

__all__ = ["DEFAULT_SOCKET_PATH", "WorkloadApiServer", "WorkloadApiSettings"]

# AF_UNIX paths are limited by sun_path (108 bytes including the terminating NUL on Linux).
_MAX_SOCKET_PATH_BYTES = 107
# grpclib listens with a backlog of 100; a node's workloads (re)connecting together after an agent restart can
# exceed that, and a Unix socket refuses (EAGAIN) rather than queues past it. The kernel caps it at somaxconn.
_BACKLOG = 4096

_log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkloadApiSettings:
    """Where the Workload API listens and how the socket file is made."""

    socket_path: Path = DEFAULT_SOCKET_PATH
    socket_mode: int = 0o777
    directory_mode: int = 0o755
    proc_root: Path = PROC_ROOT

    def __post_init__(self) -> None:
        if not self.socket_path.is_absolute():
            raise ValueError(f"the socket path must be absolute, not {self.socket_path}")
        if len(os.fsencode(self.socket_path)) > _MAX_SOCKET_PATH_BYTES:
            raise ValueError(f"the socket path is longer than {_MAX_SOCKET_PATH_BYTES} bytes")

    @property
    def endpoint(self) -> str:
        """The ``SPIFFE_ENDPOINT_SOCKET`` value a workload needs."""
        return f"unix://{self.socket_path}"


class WorkloadApiServer(Service):
    """Serves the Workload API on a Unix socket until :meth:`aclose` (or the end of ``async with``)."""

    def __init__(
        self,
        settings: WorkloadApiSettings,
        *,
        source: IdentitySource,
        attestor: CallerAttestor,
        clock: Callable[[], datetime] | None = None,
        policies: PolicyMirror | None = None,
    ) -> None:
        self._settings = settings
        self._service = WorkloadApiService(source=source, attestor=attestor, clock=clock)
        # Envoy's SDS shares the socket and the attestation, as on SPIRE's agent (sds.py).
        self._sds = SdsService(source=source, attestor=attestor)
        # Sigil's policy service shares the socket and the per-connection attestation (policies/service.py).
        self._policy_service = (
            None if policies is None else PolicyService(policies=policies, attestor=attestor)
        )
        self._server: AcceptHookServer | None = None
        self._connections: set[asyncio.BaseTransport] = set()

    @property
    def settings(self) -> WorkloadApiSettings:
        """The settings it was built with."""
        return self._settings

    async def start(self) -> None:
        """Create the socket and start accepting; raises SocketError when the path cannot be served."""
        if self._server is not None:
            raise RuntimeError("the Workload API server is already started")
        path = self._settings.socket_path
        await self._prepare_path(path)
        services: list[WorkloadApiService | SdsService | PolicyService] = [self._service, self._sds]
        if self._policy_service is not None:
            services.append(self._policy_service)
        server = AcceptHookServer(
            services, on_accept=self._accept, on_close=self._closed, codec=DeferringCodec()
        )
        try:
            await server.start(path=str(path), backlog=_BACKLOG)
            os.chmod(path, self._settings.socket_mode)
        except OSError as err:
            server.close()
            await server.wait_closed()
            raise SocketError(str(path), err.strerror or str(err)) from err
        self._server = server
        _log.info("workload API listening", endpoint=self._settings.endpoint)

    async def aclose(self) -> None:
        """Stop accepting, cancel and await every running call, close connections, remove the socket."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for transport in list(self._connections):
            transport.close()
        await server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self._settings.socket_path.unlink()
        _log.info("workload API stopped")

    def _accept(self, transport: asyncio.BaseTransport) -> Mapping[str, Handler]:
        self._connections.add(transport)
        caller: Caller
        sock = transport.get_extra_info("socket")
        if sock is None or sock.family != socket.AF_UNIX:
            caller = PeerGoneError(0, "the connection is not on a Unix socket")
        else:
            try:
                caller = capture_peer(sock, proc_root=self._settings.proc_root)
            except NodeAgentError as err:
                # The call will be refused with this error; the log says why at the time of the call.
                caller = err
        routes = self._service.bind(caller)
        routes.update(self._sds.bind(caller))
        if self._policy_service is not None:
            routes.update(self._policy_service.bind(caller))
        return routes

    def _closed(self, transport: asyncio.BaseTransport) -> None:
        self._connections.discard(transport)

    async def _prepare_path(self, path: Path) -> None:
        if not await asyncio.to_thread(self._socket_file_exists, path):
            return
        if await _answers(path):
            raise SocketError(str(path), "another process is serving on this socket")
        await asyncio.to_thread(path.unlink)
        _log.info("removed a stale workload API socket", path=str(path))

    def _socket_file_exists(self, path: Path) -> bool:
        """Create the directory; True when a socket file is already at ``path``."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=self._settings.directory_mode)
            mode = path.lstat().st_mode
        except FileNotFoundError:
            return False
        except OSError as err:
            raise SocketError(str(path), err.strerror or str(err)) from err
        if not stat.S_ISSOCK(mode):
            raise SocketError(str(path), "a file that is not a socket is in the way")
        return True


async def _answers(path: Path) -> bool:
    """True when something accepts connections on the socket at ``path``."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), timeout=1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True
