"""The running ``sigil-enforcer proxy``: identity source, TLS, policies, metrics, signals, drain.

Imported only when the proxy runs, so that ``sigil-enforcer check`` does not pay for gRPC and aiohttp.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from sigil.ca.spiffe_id import SpiffeId, TrustDomain
from sigil.enforcer.address import Address
from sigil.enforcer.authorizer import Authorizer
from sigil.enforcer.errors import IdentitySourceError, RequestError
from sigil.enforcer.metrics import EnforcerMetrics
from sigil.enforcer.policy.decision import Target
from sigil.enforcer.policy_feed import AgentPolicySource
from sigil.enforcer.proxy import InboundProxy, OutboundProxy, refusal_reporter
from sigil.enforcer.sources import StaticSource, WorkloadApiSource
from sigil.enforcer.tls import PeerRule, SpiffeTls
from sigil.kit import TaskOwner

__all__ = ["serve"]

_log = structlog.get_logger(__name__)


async def serve(args: argparse.Namespace) -> int:
    """Serve as ``args`` say until SIGTERM or SIGINT, then drain; the exit code."""
    registry = CollectorRegistry()
    metrics = EnforcerMetrics(registry)
    source = await _open_source(args)
    tls = SpiffeTls(source, on_refused=refusal_reporter(metrics))
    tasks = TaskOwner("enforcer proxy")
    closing: list[AgentPolicySource] = []
    metrics_runner: web.AppRunner | None = None
    try:
        proxy: InboundProxy | OutboundProxy
        if args.mode == "inbound":
            policies = await _open_policies(args, closing)
            authorizer = Authorizer(
                trust_domain=TrustDomain.parse(args.trust_domain)
                if args.trust_domain
                else tls.spiffe_id.trust_domain,
                target=Target.parse(args.namespace, pairs("--labels", args.labels)),
                policies=policies,
                default_allow=args.default == "allow",
                namespace_labels=pairs("--namespace-labels", args.namespace_labels),
                metrics=metrics,
            )
            if isinstance(policies, AgentPolicySource):
                await _first_snapshot(policies, authorizer)
            else:
                await asyncio.to_thread(authorizer.load)
                tasks.spawn(
                    authorizer.watch(interval=args.watch_interval), name="sigil-policy-files"
                )
            proxy = InboundProxy(
                args.listen,
                args.forward,
                tls=tls,
                authorizer=authorizer,
                policy_port=args.port,
                metrics=metrics,
                drain_seconds=args.drain,
            )
        else:
            proxy = OutboundProxy(
                args.listen,
                args.upstream,
                tls=tls,
                expect=_expectation(args),
                metrics=metrics,
                drain_seconds=args.drain,
            )
        if isinstance(source, StaticSource):
            tasks.spawn(_follow_files(source, args.watch_interval), name="sigil-svid-files")
        if args.metrics is not None:
            metrics_runner = await _serve_metrics(args.metrics, registry)
        await _until_signalled(proxy)
    finally:
        try:
            await tasks.aclose()
        finally:
            for feed in closing:
                await feed.close()
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
        try:
            await stopping.wait()
            _log.info("proxy stopping")
        finally:
            await proxy.aclose()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


async def _open_policies(
    args: argparse.Namespace, closing: list[AgentPolicySource]
) -> Path | AgentPolicySource:
    """The policy directory, or a started feed from the agent (added to ``closing``)."""
    if args.policies_from_agent is None:
        policies: Path = args.policies
        return policies
    # A bare --policies-from-agent: the agent serving the Workload API (else SPIFFE_ENDPOINT_SOCKET, the default).
    feed = AgentPolicySource(args.policies_from_agent or args.workload_api)
    closing.append(feed)
    await feed.start()
    return feed


async def _first_snapshot(feed: AgentPolicySource, authorizer: Authorizer) -> None:
    """Wait for the agent's first snapshot: serving before it would decide on no policy at all."""
    _log.info("waiting for policies from the agent", endpoint=feed.endpoint)
    await feed.wait_for_revision(0)
    _log.info("policies from the agent in force", revision=authorizer.revision)


async def _open_source(args: argparse.Namespace) -> StaticSource | WorkloadApiSource:
    if args.svid_dir is None:
        return await WorkloadApiSource.open(args.workload_api)
    directory: Path = args.svid_dir
    federated = {}
    for item in args.federated:
        name, equals, file = item.partition("=")
        if not equals:
            raise RequestError("--federated", item, "expected TD=FILE")
        federated[TrustDomain.parse(name)] = Path(file)
    return await asyncio.to_thread(
        StaticSource,
        directory / "svid.pem",
        directory / "key.pem",
        directory / "bundle.pem",
        federated=federated,
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


def _expectation(args: argparse.Namespace) -> PeerRule | None:
    if args.expect_id:
        return SpiffeId.parse(args.expect_id)
    if args.expect_trust_domain:
        return TrustDomain.parse(args.expect_trust_domain)
    return None


async def _serve_metrics(address: Address, registry: CollectorRegistry) -> web.AppRunner:
    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, address.host, address.port).start()
    except OSError:
        await runner.cleanup()
        raise
    return runner


def pairs(option: str, text: str) -> dict[str, str]:
    """``k=v,k2=v2`` -> mapping (keys and values are checked by :meth:`Target.parse`)."""
    pairs: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, equals, value = item.partition("=")
        if not equals or not key:
            raise RequestError(option, item, "expected key=value")
        pairs[key] = value
    return pairs
