"""``sigil-server run``: the issuer's listeners, started together and drained together.

Three listeners share one :class:`~sigil.issuer.edge.parts.Issuer`: the main API (mutual TLS), the admin API on a Unix
socket created 0600 inside a 0700 directory (so there is no window in which another user could connect), and, when
configured, the federation bundle endpoint. SIGTERM marks the server draining (``/ready`` turns 503), stops accepting,
lets requests in flight finish within ``shutdown_timeout``, then cancels the background tasks and closes the CA.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import ssl
from pathlib import Path

import structlog
from aiohttp import web

from sigil.issuer.edge.assembly import (
    admin_app,
    close_issuer,
    federation_app,
    federation_pollers,
    main_app,
    open_issuer,
)
from sigil.issuer.edge.parts import Issuer
from sigil.issuer.errors import ConfigError
from sigil.issuer.settings import ServerSettings
from sigil.kit import Service, freeze_startup_heap

__all__ = ["IssuerServer", "run_server"]

_log = structlog.get_logger(__name__)


class IssuerServer(Service):
    """A running issuer: ``async with IssuerServer(issuer) as server: server.url``."""

    def __init__(self, issuer: Issuer, *, shutdown_timeout: float = 10.0) -> None:
        self.issuer = issuer
        self._shutdown_timeout = shutdown_timeout
        self._runners: list[web.AppRunner] = []
        self.port = 0
        self.federation_port = 0
        #: One poller per federated trust domain, owned by the main app's cleanup context.
        self.pollers = federation_pollers(issuer)

    @property
    def settings(self) -> ServerSettings:
        return self.issuer.settings

    @property
    def url(self) -> str:
        return f"https://{self.settings.server.host}:{self.port}"

    @property
    def admin_socket(self) -> Path:
        return self.settings.admin_socket

    async def _runner(self, app: web.Application) -> web.AppRunner:
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=self._shutdown_timeout)
        await runner.setup()
        self._runners.append(runner)
        return runner

    async def start(self) -> None:
        server = self.settings.server
        try:
            main = await self._runner(main_app(self.issuer, pollers=self.pollers))
            site = web.TCPSite(
                main, server.host, server.port, ssl_context=self.issuer.serving.front
            )
            await site.start()
            self.port = main.addresses[0][1]
            await self._start_admin()
            if server.bundle_endpoint is not None:
                endpoint = server.bundle_endpoint
                if endpoint.profile == "https_spiffe":
                    # The server's own SVID, through the same front that follows its renewals.
                    context = self.issuer.serving.front
                else:
                    if endpoint.cert_file is None or endpoint.key_file is None:
                        raise ConfigError(
                            "bundle_endpoint", "https_web needs cert_file and key_file"
                        )
                    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                    await asyncio.to_thread(
                        context.load_cert_chain, endpoint.cert_file, endpoint.key_file
                    )
                runner = await self._runner(federation_app(self.issuer))
                await web.TCPSite(runner, endpoint.host, endpoint.port, ssl_context=context).start()
                self.federation_port = runner.addresses[0][1]
        except BaseException:
            await self.aclose()
            raise
        _log.info("server.started", url=self.url, admin_socket=str(self.admin_socket))

    async def _start_admin(self) -> None:
        path = self.admin_socket
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a stale socket of a server that died; start() would fail on it
        runner = await self._runner(admin_app(self.issuer))
        old_umask = os.umask(0o177)  # the socket is born 0600: no window with a looser mode
        try:
            await web.UnixSite(runner, str(path)).start()
        finally:
            os.umask(old_umask)
        path.chmod(0o600)

    async def aclose(self) -> None:
        self.issuer.draining = True
        runners, self._runners = self._runners, []
        for runner in reversed(runners):
            await runner.cleanup()
        with contextlib.suppress(FileNotFoundError):
            self.admin_socket.unlink()


async def run_server(settings: ServerSettings) -> int:
    """Serve until SIGTERM or SIGINT, then drain; the exit code for ``sigil-server run``."""
    issuer = await open_issuer(settings)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    try:
        async with IssuerServer(issuer):
            # The CA, the datastore's engine and the first policy set live as long as the process: out of the
            # collector's full passes, which would stall every agent's request (sigil.kit.heap).
            freeze_startup_heap()
            await stopping.wait()
            _log.info("server.draining")
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await close_issuer(issuer)
    return 0
