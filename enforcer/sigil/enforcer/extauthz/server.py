"""The running ``sigil-enforcer ext-authz``: policies, the authorizer, the gRPC server, metrics, signals.

Imported only when the server runs. Unlike the proxy, which waits for the agent's first snapshot before it
listens, this server listens at once: Envoy calls it as soon as its own listener is up, and a call that comes
before the first policy set is in force must get a denial that says so, not a refused connection that Envoy
would read as a network failure. A policy directory that cannot be read yet is tried again every
``--watch-interval`` seconds, with every call denied until it can.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import stat
from pathlib import Path

import structlog
from aiohttp import web
from grpclib.server import Server
from prometheus_client import CollectorRegistry

from sigil.enforcer.authorizer import Authorizer
from sigil.enforcer.errors import RequestError
from sigil.enforcer.exposition import serve_metrics
from sigil.enforcer.extauthz.service import AuthorizationService
from sigil.enforcer.extauthz.settings import ExtAuthzSettings
from sigil.enforcer.h2_streams import bound_closed_streams
from sigil.enforcer.metrics import EnforcerMetrics
from sigil.enforcer.policy.receiver import AgentPolicySource
from sigil.enforcer.proxy.settings import Address
from sigil.kit import TaskOwner, freeze_startup_heap

__all__ = ["serve"]

_log = structlog.get_logger(__name__)


async def serve(settings: ExtAuthzSettings) -> int:
    """Serve Envoy's ``Check`` as ``settings`` say until SIGTERM or SIGINT; the exit code."""
    registry = CollectorRegistry()
    metrics = EnforcerMetrics(registry)
    tasks = TaskOwner("enforcer ext-authz")
    feed: AgentPolicySource | None = None
    metrics_runner: web.AppRunner | None = None
    loaded = asyncio.Event()
    try:
        if settings.policies is None:
            feed = AgentPolicySource(settings.agent_endpoint)
            await feed.start()
        authorizer = Authorizer(
            trust_domain=settings.trust_domain,
            target=settings.target,
            policies=feed if feed is not None else settings.policies,
            default=settings.default,
            workload_ids=settings.workload_ids,
            namespace_labels=settings.namespace_labels,
            metrics=metrics,
            root_namespace=settings.root_namespace,
            trust_domain_aliases=settings.trust_domain_aliases,
        )
        if feed is None:
            tasks.spawn(
                _follow_directory(authorizer, loaded, settings.watch_interval),
                name="sigil-policy-files",
            )
        service = AuthorizationService(
            authorizer,
            trust_domains=settings.trust_domains,
            ready=loaded.is_set if feed is None else (lambda: feed.current is not None),
            policy_port=settings.policy_port,
        )
        if settings.metrics is not None:
            metrics_runner = await serve_metrics(
                settings.metrics.host, settings.metrics.port, registry
            )
        bound_closed_streams()
        await _until_signalled(Server([service]), settings.listen)
    finally:
        try:
            await tasks.aclose()
        finally:
            if feed is not None:
                await feed.aclose()
            if metrics_runner is not None:
                await metrics_runner.cleanup()
    return 0


async def _follow_directory(authorizer: Authorizer, loaded: asyncio.Event, interval: float) -> None:
    """Load the directory, then reload what changes; ``loaded`` is set once one read succeeded."""
    while True:
        if await authorizer.reload() is not None:
            loaded.set()
        await asyncio.sleep(interval)


async def _until_signalled(server: Server, listen: Address | Path) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    try:
        try:
            if isinstance(listen, Path):
                _remove_stale_socket(listen)
                await server.start(path=str(listen))
            else:
                await server.start(listen.host, listen.port)
        except OSError as err:
            raise RequestError("--listen", str(listen), err.strerror or str(err)) from err
        _log.info("ext_authz listening", address=str(listen))
        # What the start built (modules, the first policies) lives as long as the process: kept out of the
        # collector's full passes, which would otherwise scan it all again and again, stalling every Check.
        freeze_startup_heap()
        try:
            await stopping.wait()
            _log.info("ext_authz stopping")
        finally:
            server.close()
            await server.wait_closed()
            _log.info("ext_authz closed")
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def _remove_stale_socket(path: Path) -> None:
    """Remove a socket a previous run left at ``path``; anything else there is left for bind() to refuse."""
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(path.lstat().st_mode):
            path.unlink()
