"""The agent's health endpoint, for Kubernetes probes (SPIRE's agent has one too: ``health_checks``).

``/live`` answers while the process and its event loop are alive, including while the agent still waits for the
issuer at start; ``/ready`` answers 200 only once the agent serves the Workload API with a valid agent SVID, and
503 with the reason otherwise. It is plain HTTP on its own port: it carries no identity and no secret.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

__all__ = ["HealthServer", "Readiness"]

#: ``(ready, reason)``: the reason says what is missing when not ready.
Readiness = Callable[[], tuple[bool, str]]


class HealthServer:
    """Serves ``/live`` and ``/ready`` on ``host:port`` until :meth:`stop`."""

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

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
