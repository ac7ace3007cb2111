"""Legs of the rotation drill that go through a real Envoy pair on SDS, and the loop that drives any leg.

:func:`envoy_pair` starts a backend, a server-side and a caller-side Envoy, both configured only by SDS from the
agent's socket (the bootstraps of :mod:`sigil_testing.envoy_sds`); the caller opens a new connection per request, so
every request through :class:`EnvoyLeg` is a new handshake with whatever certificate and roots Envoy holds then, and
shows the certificate it presented. :func:`every` makes a request at a fixed pace and counts it in a
:class:`~sigil_testing.drill.Traffic`. Used by ``tests/integration/test_rotation_drill_files.py`` and
``bench/rotation.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
from aiohttp import web
from cryptography import x509

from sigil_testing.drill import Traffic
from sigil_testing.envoy import run_envoy
from sigil_testing.envoy_sds import caller_bootstrap, client_certificate_of, server_bootstrap
from sigil_testing.network import free_ports

__all__ = ["EnvoyLeg", "envoy_pair", "every", "xfcc_backend"]


@contextlib.asynccontextmanager
async def every(
    flow: Traffic, request: Callable[[], Awaitable[str]], interval: float = 0.03
) -> AsyncIterator[None]:
    """Call ``request`` (returning ``"ok"`` or a reason) every ``interval`` seconds, recording each outcome, until the block ends."""

    async def run() -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                outcome = await request()
            except (
                Exception
            ) as err:  # every failure is a failed request, which is what the drill counts
                outcome = f"fail {type(err).__name__} {err}"
            flow.record(outcome)
            await asyncio.sleep(max(0.0, interval - (loop.time() - started)))

    task = asyncio.create_task(run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def xfcc_backend(port: int) -> web.AppRunner:
    """An HTTP server on ``port`` answering every request with its ``x-forwarded-client-cert``."""

    async def echo(request: web.Request) -> web.Response:
        return web.Response(text=request.headers.get("x-forwarded-client-cert", ""))

    app = web.Application()
    app.router.add_get("/", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


class EnvoyLeg:
    """Requests through the caller-side Envoy; remembers the certificate the last one presented to the server."""

    def __init__(self, session: aiohttp.ClientSession, port: int) -> None:
        self.session, self.port = session, port
        self.last: x509.Certificate | None = None

    async def request(self) -> str:
        async with self.session.get(
            f"http://127.0.0.1:{self.port}/", timeout=aiohttp.ClientTimeout(total=5)
        ) as response:
            body = await response.text()
            if response.status != 200:
                return f"fail status {response.status} {body[:100]}"
        self.last = client_certificate_of(body)
        return "ok"


@contextlib.asynccontextmanager
async def envoy_pair(socket_path: Path, directory: Path) -> AsyncIterator[int]:
    """Backend, server-side and caller-side Envoy on SDS from the agent; yields the caller's plain HTTP port."""
    backend_port, server_port, caller_port = free_ports(3)
    runner = await xfcc_backend(backend_port)
    try:
        async with (
            run_envoy(
                server_bootstrap(
                    agent_socket=socket_path, port=server_port, backend_port=backend_port
                ),
                directory,
                name="server-envoy",
            ),
            run_envoy(
                caller_bootstrap(
                    agent_socket=socket_path, port=caller_port, server_port=server_port
                ),
                directory,
                name="caller-envoy",
            ),
        ):
            yield caller_port
    finally:
        await runner.cleanup()
