"""The agent's health endpoint, for Kubernetes probes (SPIRE's agent has one too: ``health_checks``).

``/live`` answers while the process and its event loop are alive, including while the agent still waits for the
issuer at start; ``/ready`` answers 200 only once the agent serves the Workload API with a valid agent SVID that
the issuer accepts, and 503 with the reason otherwise (a join-token agent the issuer evicted says so here). It is
plain HTTP on its own port: it carries no identity and no secret.

:func:`check_ready` is the other end, for ``sigil-agent healthcheck``: scripts and exec probes that cannot speak
HTTP themselves ask the same ``/ready`` and get an exit status.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable

import h11

from sigil.kit import Service

__all__ = ["HealthServer", "Readiness", "check_ready"]

# A listener on every address is asked on loopback.
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # noqa: S104 -- we connect, not bind
#: Seconds a prober has to send its whole request; a connection that says nothing is closed.
_REQUEST_SECONDS = 10.0
_PATHS = (b"/live", b"/ready")

#: ``(ready, reason)``: the reason says what is missing when not ready.
Readiness = Callable[[], tuple[bool, str]]


class HealthServer(Service):
    """Serves ``/live`` and ``/ready`` on ``host:port`` until :meth:`aclose`.

    One request per connection (the answer says ``Connection: close``), as a kubelet probe makes it; HTTP/1.1 by
    h11, the agent's HTTP library, rather than a web framework for two fixed answers.
    """

    def __init__(self, listen: str, readiness: Readiness) -> None:
        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"health_listen {listen!r} is not HOST:PORT")
        self._host = host
        self._port = int(port)
        self._readiness = readiness
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0)."""
        return self._port

    async def start(self) -> None:
        server = await asyncio.start_server(self._serve, self._host.strip("[]") or None, self._port)
        self._port = server.sockets[0].getsockname()[1]
        self._server = server

    async def aclose(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    def _answer(self, request: h11.Request) -> tuple[int, dict[str, object], list[tuple[str, str]]]:
        if request.target not in _PATHS:
            return 404, {"error": "not found"}, []
        if request.method not in (b"GET", b"HEAD"):
            return 405, {"error": "method not allowed"}, [("Allow", "GET, HEAD")]
        if request.target == b"/live":
            return 200, {"live": True}, []
        ready, reason = self._readiness()
        return (200 if ready else 503), {"ready": ready, "reason": reason}, []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = h11.Connection(h11.SERVER)
        try:
            async with asyncio.timeout(_REQUEST_SECONDS):
                request = await _read_request(connection, reader)
            if request is None:
                return
            status, document, extra = self._answer(request)
            body = json.dumps(document).encode()
            headers = [
                ("Content-Type", "application/json; charset=utf-8"),
                ("Content-Length", str(len(body))),
                ("Connection", "close"),
                *extra,
            ]
            writer.write(connection.send(h11.Response(status_code=status, headers=headers)))
            if request.method != b"HEAD":
                writer.write(connection.send(h11.Data(data=body)))
            writer.write(connection.send(h11.EndOfMessage()))
            await writer.drain()
        except (h11.ProtocolError, OSError, TimeoutError):
            return  # a broken or silent prober gets nothing more; the connection is closed below
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def _read_request(
    connection: h11.Connection, reader: asyncio.StreamReader
) -> h11.Request | None:
    """The request's head (its body, if any, is not needed), or None when the peer closed first."""
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            connection.receive_data(await reader.read(4096))
        elif isinstance(event, h11.Request):
            return event
        else:
            return None  # ConnectionClosed before a request


def check_ready(listen: str, *, timeout: float) -> tuple[bool, str]:
    """Ask the health endpoint at ``listen`` (``HOST:PORT``) whether the agent is ready, and why not.

    Raises ValueError for an address that is not ``HOST:PORT`` and OSError when nothing answers there.
    """
    host, _, port = listen.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"{listen!r} is not HOST:PORT")
    host = host.strip("[]")
    # Here, not at the top: the running agent serves with h11 and would hold http.client for nothing (0.5 MB).
    import http.client

    connection = http.client.HTTPConnection(_WILDCARDS.get(host, host), int(port), timeout=timeout)
    try:
        connection.request("GET", "/ready")
        reply = connection.getresponse()
        body = reply.read()
    except http.client.HTTPException as err:
        raise OSError(f"not an agent health endpoint ({type(err).__name__})") from err
    finally:
        connection.close()
    try:
        document = json.loads(body)
        ready, reason = bool(document["ready"]), str(document["reason"])
    except (ValueError, KeyError, TypeError) as err:
        raise OSError(f"not an agent health endpoint (HTTP {reply.status})") from err
    return ready and reply.status == 200, reason
