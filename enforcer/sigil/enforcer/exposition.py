"""``/metrics`` for an enforcer process: the one small aiohttp site both ``proxy`` and ``ext-authz`` serve.

The proxy adds ``/policy`` (the effective view of the pod it guards) to the same site.

Written once so that the two commands expose their :class:`~sigil.enforcer.metrics.EnforcerMetrics` the same way,
and refuse a ``--metrics`` port in use the same way: as bad input naming the flag (exit 2), not a traceback.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from sigil.enforcer.errors import RequestError

__all__ = ["Handler", "serve_metrics"]


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def serve_metrics(
    host: str, port: int, registry: CollectorRegistry, *, more: Mapping[str, Handler] | None = None
) -> web.AppRunner:
    """Serve ``registry`` at ``http://host:port/metrics`` (and ``more`` GET routes, by path) until the returned
    runner is cleaned up."""

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    for path, handler in (more or {}).items():
        app.router.add_get(path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as err:
        await runner.cleanup()
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        raise RequestError("--metrics", where, err.strerror or str(err)) from err
    return runner
