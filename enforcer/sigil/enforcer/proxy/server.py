"""The running ``sigil-enforcer proxy``: identity source, TLS, policies, metrics, signals, drain.

Imported only when the proxy runs, so that ``sigil-enforcer check`` does not pay for gRPC and aiohttp.
"""

from __future__ import annotations

import asyncio
import json
import signal
from argparse import ArgumentTypeError
from pathlib import Path

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry

from sigil.enforcer.authorizer import Authorizer
from sigil.enforcer.errors import IdentitySourceError, RequestError
from sigil.enforcer.exposition import Handler, serve_metrics
from sigil.enforcer.flags import port_argument
from sigil.enforcer.metrics import EnforcerMetrics
from sigil.enforcer.policy.receiver import AgentPolicySource
from sigil.enforcer.proxy.listener import InboundProxy, OutboundProxy, refusal_reporter
from sigil.enforcer.proxy.settings import Inbound, ProxySettings
from sigil.enforcer.sources import StaticSource
from sigil.enforcer.tls import SpiffeTls
from sigil.enforcer.workload_source import WorkloadApiSource
from sigil.kit import TaskOwner, freeze_startup_heap

__all__ = ["serve"]

_log = structlog.get_logger(__name__)


async def serve(settings: ProxySettings) -> int:
    """Serve as ``settings`` say until SIGTERM or SIGINT, then drain; the exit code."""
    registry = CollectorRegistry()
    metrics = EnforcerMetrics(registry)
    source = await _open_source(settings)
    tls = SpiffeTls(source, on_refused=refusal_reporter(metrics))
    tasks = TaskOwner("enforcer proxy")
    closing: list[AgentPolicySource] = []
    metrics_runner: web.AppRunner | None = None
    guarding: Authorizer | None = None
    try:
        proxy: InboundProxy | OutboundProxy
        direction = settings.direction
        if isinstance(direction, Inbound):
            policies = await _open_policies(direction, closing)
            authorizer = Authorizer(
                trust_domain=direction.trust_domain or tls.spiffe_id.trust_domain,
                target=direction.target,
                policies=policies,
                default=direction.default,
                namespace_labels=direction.namespace_labels,
                workload_ids=direction.workload_ids,
                metrics=metrics,
                root_namespace=direction.root_namespace,
                trust_domain_aliases=direction.trust_domain_aliases,
            )
            guarding = authorizer
            # Cached decisions do not outlive a change of the trust bundles.
            authorizer.set_bundles(source.current().bundles)
            source.subscribe(authorizer.follow_material)
            if isinstance(policies, AgentPolicySource):
                await _first_snapshot(policies, authorizer)
            else:
                await asyncio.to_thread(authorizer.load)
                tasks.spawn(
                    authorizer.watch(interval=settings.watch_interval), name="sigil-policy-files"
                )
            proxy = InboundProxy(
                settings.listen,
                direction.forward,
                tls=tls,
                authorizer=authorizer,
                policy_port=direction.policy_port,
                probe_paths=direction.probe_paths,
                metrics=metrics,
                drain_seconds=settings.drain_seconds,
            )
        else:
            proxy = OutboundProxy(
                settings.listen,
                direction.upstream,
                tls=tls,
                expect=direction.expect,
                metrics=metrics,
                drain_seconds=settings.drain_seconds,
            )
        if isinstance(source, StaticSource):
            tasks.spawn(_follow_files(source, settings.watch_interval), name="sigil-svid-files")
        if settings.metrics is not None:
            metrics_runner = await serve_metrics(
                settings.metrics.host,
                settings.metrics.port,
                registry,
                more={"/policy": _policy_view(guarding)},
            )
        await _until_signalled(proxy)
    finally:
        try:
            await tasks.aclose()
        finally:
            for feed in closing:
                await feed.aclose()
            if metrics_runner is not None:
                await metrics_runner.cleanup()
            tls.close()
            if isinstance(source, WorkloadApiSource):
                await source.aclose()
    return 0


async def _until_signalled(proxy: InboundProxy | OutboundProxy) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    try:
        try:
            await proxy.start()
        except OSError as err:
            raise RequestError("--listen", str(proxy.listen), err.strerror or str(err)) from err
        # What the start built (modules, TLS contexts, the first policies) lives as long as the process: kept
        # out of the collector's full passes, which would otherwise scan it all again and again, stalling
        # every connection (bench/propagate.py measures such passes).
        freeze_startup_heap()
        try:
            await stopping.wait()
            _log.info("proxy stopping")
        finally:
            await proxy.aclose()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


async def _open_policies(
    inbound: Inbound, closing: list[AgentPolicySource]
) -> Path | AgentPolicySource:
    """The policy directory, or a started feed from the agent (added to ``closing``)."""
    if inbound.policies is not None:
        return inbound.policies
    feed = AgentPolicySource(inbound.agent_endpoint)
    closing.append(feed)
    await feed.start()
    return feed


async def _first_snapshot(feed: AgentPolicySource, authorizer: Authorizer) -> None:
    """Wait for the agent's first snapshot: serving before it would decide on no policy at all."""
    _log.info("waiting for policies from the agent", endpoint=feed.endpoint)
    await feed.wait_for_revision(0)
    _log.info("policies from the agent in force", revision=authorizer.revision)


async def _open_source(settings: ProxySettings) -> StaticSource | WorkloadApiSource:
    directory = settings.svid_dir
    if directory is None:
        return await WorkloadApiSource.open(settings.workload_api)
    return await asyncio.to_thread(
        StaticSource,
        directory / "svid.pem",
        directory / "key.pem",
        directory / "bundle.pem",
        federated=settings.federated,
    )


async def _follow_files(source: StaticSource, interval: float) -> None:
    """Reload the SVID files when they change on disk (a rotation by whoever writes them)."""
    stamp = await asyncio.to_thread(source.stamp)
    while True:
        await asyncio.sleep(interval)
        fresh = await asyncio.to_thread(source.stamp)
        if fresh == stamp:
            continue
        try:
            material = await source.refresh()
        except IdentitySourceError as err:
            _log.error("SVID files unusable; the last good SVID stays in use", error=str(err))
            continue  # half-written files, say: try again on the next tick
        stamp = fresh
        _log.info("SVID reloaded", spiffe_id=str(material.spiffe_id))


def _policy_view(authorizer: Authorizer | None) -> Handler:
    async def policy(request: web.Request) -> web.Response:
        # The effective view of the pod this proxy guards (README, "The effective policy of a workload").
        if authorizer is None:
            raise web.HTTPNotFound(text="an outbound proxy guards no pod: no policy to show\n")
        port = request.query.get("port")
        try:
            chosen = None if port is None else port_argument(port)
        except ArgumentTypeError as err:
            raise web.HTTPBadRequest(text=f"port: {err}\n") from err
        return web.json_response(authorizer.policy_view(port=chosen), dumps=_indented)

    return policy


def _indented(data: object) -> str:
    return json.dumps(data, indent=2)
