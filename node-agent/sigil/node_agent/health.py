"""The agent's health endpoint, for Kubernetes probes (SPIRE's agent has one too: ``health_checks``).

``/live`` answers while the process and its event loop are alive, including while the agent still waits for the
issuer at start; ``/ready`` answers 200 only once the agent serves the Workload API with a valid agent SVID that
the issuer accepts, and 503 with the reason otherwise (a join-token agent the issuer evicted says so here). It is
plain HTTP on its own port: it carries no identity and no secret.

:func:`check_ready` is the other end, for ``sigil-agent healthcheck``: scripts and exec probes that cannot speak
HTTP themselves ask the same ``/ready`` and get an exit status.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable

from aiohttp import web

from sigil.kit import Service

__all__ = ["HealthServer", "Readiness", "check_ready"]

# A listener on every address is asked on loopback.
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # noqa: S104 -- we connect, not bind

#: ``(ready, reason)``: the reason says what is missing when not ready.
Readiness = Callable[[], tuple[bool, str]]


class HealthServer(Service):
    """Serves ``/live`` and ``/ready`` on ``host:port`` until :meth:`aclose`."""

    def __init__(self, listen: str, readiness: Readiness) -> None:
        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"health_listen {listen!r} is not HOST:PORT")
        self._host = host
        self._port = int(port)
        self._readiness = readiness
        self._runner: web.AppRunner | None = None

    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0)."""
        return self._port

    async def _live(self, _request: web.Request) -> web.Response:
        return web.json_response({"live": True})

    async def _ready(self, _request: web.Request) -> web.Response:
        ready, reason = self._readiness()
        return web.json_response({"ready": ready, "reason": reason}, status=200 if ready else 503)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/live", self._live)
        app.router.add_get("/ready", self._ready)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port)
        await site.start()
        self._port = runner.addresses[0][1]
        self._runner = runner

    async def aclose(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()


def check_ready(listen: str, *, timeout: float) -> tuple[bool, str]:
    """Ask the health endpoint at ``listen`` (``HOST:PORT``) whether the agent is ready, and why not.

    Raises ValueError for an address that is not ``HOST:PORT`` and OSError when nothing answers there.
    """
    host, _, port = listen.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"{listen!r} is not HOST:PORT")
    host = host.strip("[]")
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
