"""Assembling the issuer: its parts from the settings, and the three aiohttp applications that serve them.

- the main application (agents and workloads, mutual TLS with the server's own SVID),
- the admin application (the local Unix socket behind every ``sigil-server`` admin verb),
- the federation bundle endpoint (``https_web``, its own listener and certificate).

The main application owns the background tasks in its ``cleanup_ctx`` (the CA rotator tick, the feed that follows
the CA, the pod cache watch, one poller per federated trust domain): each is started with the app and cancelled and
awaited when it shuts down (https://docs.aiohttp.org/en/stable/web_advanced.html#cleanup-context).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import datetime
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry
from sqlalchemy.exc import SQLAlchemyError

from sigil.ca.errors import SigilError
from sigil.ca.service import CertificateAuthority, utc_now
from sigil.enforcer.policy.dialects.base import TranslateOptions
from sigil.enforcer.policy.peer_ids import DEFAULT_WORKLOAD_ID_TEMPLATE
from sigil.issuer.agents.authentication import AgentAuthenticator
from sigil.issuer.bundles.configmap import publish_bundle_configmap
from sigil.issuer.bundles.federation import FederationPoller
from sigil.issuer.bundles.feed import BundleFeed
from sigil.issuer.datastore.agentrecords import AgentRecords
from sigil.issuer.datastore.registry import MIGRATIONS, Registry
from sigil.issuer.edge.listener_tls import ServingIdentity
from sigil.issuer.edge.openapi import routes as openapi_routes
from sigil.issuer.edge.parts import ISSUER, Issuer, KubeParts
from sigil.issuer.edge.problems import problem_middleware
from sigil.issuer.edge.ratelimit import RateLimiter
from sigil.issuer.edge.routes import agent, bundle, health, nodepods, policies, svids
from sigil.issuer.edge.routes.admin import routes as admin_table
from sigil.issuer.kube import KubeApi, PodCache, TokenReviewAuthenticator
from sigil.issuer.metrics import IssuerMetrics
from sigil.issuer.policies.crd_source import policy_informers
from sigil.issuer.policies.feed import PolicyFeed
from sigil.issuer.policies.foreign_crds import ForeignPolicyWatch
from sigil.issuer.policies.tables import PolicyTables
from sigil.issuer.settings import ServerSettings
from sigil.issuer.settings.sections import resolve_namespace
from sigil.kit import TaskOwner

__all__ = [
    "admin_app",
    "close_issuer",
    "federation_app",
    "federation_pollers",
    "main_app",
    "open_ca",
    "open_issuer",
]

_log = structlog.get_logger(__name__)


async def open_ca(
    settings: ServerSettings, *, clock: Callable[[], datetime] = utc_now
) -> CertificateAuthority:
    """The CA over a datastore migrated with the issuer's tables too."""
    return await CertificateAuthority.open(settings.ca, clock=clock, extra_migrations=[MIGRATIONS])


async def open_issuer(
    settings: ServerSettings,
    *,
    registry: CollectorRegistry | None = None,
    clock: Callable[[], datetime] = utc_now,
    kube_clock: Callable[[], float] | None = None,
    rate_clock: Callable[[], float] | None = None,
) -> Issuer:
    """Open the CA and Kubernetes connections (no listener yet); close with :func:`close_issuer`."""
    ca = await open_ca(settings, clock=clock)
    metrics = IssuerMetrics(registry if registry is not None else CollectorRegistry())
    kube = None
    kube_settings = settings.server.kubernetes
    try:
        if kube_settings is not None:
            if kube_settings.kubeconfig is not None:
                api = KubeApi.from_kubeconfig(kube_settings.kubeconfig)
            else:
                api = KubeApi.in_cluster()
            extra: dict[str, Any] = {"clock": kube_clock} if kube_clock is not None else {}
            pods = PodCache(api)
            extra["pods"] = pods
            kube = KubeParts(
                api,
                TokenReviewAuthenticator(
                    api,
                    audience=kube_settings.agent_audience,
                    allowed_service_accounts=kube_settings.agent_service_accounts,
                    name="agent",
                    metrics=metrics.kube,
                    **extra,
                ),
                TokenReviewAuthenticator(
                    api,
                    audience=kube_settings.workload_audience,
                    name="workload",
                    metrics=metrics.kube,
                    **extra,
                ),
                pods,
            )
    except BaseException:
        await ca.aclose()
        raise
    server = settings.server
    policies = PolicyFeed(
        PolicyTables(ca.store.engine),
        metrics,
        directory=settings.policy.directory,
        poll_interval=settings.policy.poll_interval.total_seconds(),
        now=ca.now,
        translation=TranslateOptions(
            trust_domain=settings.ca.trust_domain.name,
            root_namespace=settings.policy.root_namespace,
            id_template=(
                kube_settings.workload_id_template.template
                if kube_settings is not None
                else DEFAULT_WORKLOAD_ID_TEMPLATE
            ),
        ),
    )
    try:
        await policies.load()
    except BaseException:
        if kube is not None:
            await kube.api.aclose()
        await ca.aclose()
        raise
    limiter_extra: dict[str, Any] = {"clock": rate_clock} if rate_clock is not None else {}
    agent_records = AgentRecords(ca.store.engine)
    issuer = Issuer(
        settings=settings,
        ca=ca,
        registry=Registry(ca.store.engine),
        feed=BundleFeed(ca),
        serving=ServingIdentity(ca, dns_names=server.dns_names),
        metrics=metrics,
        limiter=RateLimiter(rate=server.rate_per_second, burst=server.rate_burst, **limiter_extra),
        kube=kube,
        clock=clock,
        policies=policies,
        agent_records=agent_records,
        agents=AgentAuthenticator(ca, agent_records, clock=clock),
    )
    try:
        # The server's own SVID: the first signature, so the first place a signing worker that cannot start shows.
        await issuer.serving.renew()
    except BaseException:
        await close_issuer(issuer)
        raise
    issuer.feed.current()
    issuer.ready = True
    return issuer


async def close_issuer(issuer: Issuer) -> None:
    if issuer.kube is not None:
        await issuer.kube.agents.aclose()
        await issuer.kube.workloads.aclose()
        await issuer.kube.pods.aclose()
        await issuer.kube.api.aclose()
    await issuer.ca.aclose()


async def _tick(issuer: Issuer) -> None:
    """The rotator: SPIRE's 10 s tick, which also refreshes from the datastore (other replicas' changes)."""
    interval = issuer.settings.server.rotate_interval.total_seconds()
    while True:
        await asyncio.sleep(interval)
        try:
            done = await issuer.ca.rotate()
            for step in done:
                _log.info("ca.rotated", step=step)
            pruned = await issuer.ca.prune_journal()
            if pruned:
                _log.info("journal.pruned", rows=pruned)
            if issuer.serving.due(issuer.clock()):
                await issuer.serving.renew()
            await issuer.feed.publish()
            await issuer.metrics.count_unreplaced(issuer.ca)
        except SigilError as err:
            _log.warning("ca.tick_failed", detail=str(err))


async def _refresh(issuer: Issuer) -> None:
    """Re-read the authorities often, so another replica's taint or rotation reaches our waiters in about a second.

    The bundle feed's revision covers the tainted set as well as the sequence, so publishing after the re-read
    wakes agents for a taint (which does not move the sequence) as well as for a rotation.
    """
    interval = issuer.settings.server.refresh_interval.total_seconds()
    while True:
        await asyncio.sleep(interval)
        try:
            await issuer.ca.refresh()
            # A new anchor must reach the listener's trust store too: agents renewed by the new authority
            # would otherwise fail the handshake here until the next rotate tick.
            if issuer.serving.due(issuer.clock()):
                await issuer.serving.renew()
            await issuer.feed.publish()
        except (SigilError, SQLAlchemyError, OSError) as err:
            _log.warning("ca.refresh_failed", detail=str(err))


async def _follow_bundle(issuer: Issuer) -> None:
    """Renew the serving identity the moment this process's bundle moves (a verb or a rotation here).

    Its trust store is the bundle of its last renewal: waiting for the next refresh would refuse, for up to a
    refresh interval, the handshake of an agent that renewed under an authority activated right after a prepare.
    """
    while True:
        await issuer.ca.wait_for_bundle(issuer.ca.bundle().sequence)
        try:
            if issuer.serving.due(issuer.clock()):
                await issuer.serving.renew()
        except SigilError as err:
            _log.warning("ca.serving_renew_failed", detail=str(err))


def _owned(
    name: str, factory: Callable[[], Coroutine[Any, Any, None]]
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def context(_app: web.Application) -> AsyncIterator[None]:
        async with TaskOwner(name) as tasks:
            tasks.spawn(factory(), name=name)
            yield

    return context


def _base(issuer: Issuer) -> web.Application:
    app = web.Application(
        client_max_size=issuer.settings.server.client_max_size,
        middlewares=[
            problem_middleware(issuer.metrics, max_size=issuer.settings.server.client_max_size)
        ],
    )
    app[ISSUER] = issuer
    return app


def main_app(issuer: Issuer, *, pollers: list[FederationPoller] | None = None) -> web.Application:
    """The agents' and workloads' API, with the background tasks that keep the issuer current."""
    app = _base(issuer)
    for table in (
        agent.routes,
        svids.routes,
        bundle.routes,
        policies.routes,
        health.routes,
        openapi_routes,
    ):
        app.router.add_routes(table)
    nodepods.install(app)
    # on_shutdown runs after the listener has stopped accepting and before in-flight requests are awaited:
    # long polls answer now with what they have, so they end with the drain instead of holding it up.
    app.on_shutdown.append(lambda _app: issuer.feed.drain())
    app.on_shutdown.append(lambda _app: issuer.policies.drain())
    app.cleanup_ctx.append(_owned("sigil-ca-tick", lambda: _tick(issuer)))
    app.cleanup_ctx.append(_owned("sigil-ca-refresh", lambda: _refresh(issuer)))
    app.cleanup_ctx.append(_owned("sigil-bundle-feed", issuer.feed.follow_ca))
    app.cleanup_ctx.append(_owned("sigil-serving-follow", lambda: _follow_bundle(issuer)))
    app.cleanup_ctx.append(_owned("sigil-policy-poll", issuer.policies.run))
    if issuer.kube is not None:
        pods = issuer.kube.pods
        foreign = (
            ForeignPolicyWatch(
                issuer.kube.api,
                issuer.policies,
                translation=issuer.policies.translation,
                discovery_interval=issuer.settings.policy.crd_discovery_interval.total_seconds(),
                pods=pods,
            )
            if issuer.settings.policy.watch_crds
            else None
        )
        informers = policy_informers(
            issuer.kube.api,
            issuer.policies,
            watch_crds=issuer.settings.policy.watch_crds,
            now=issuer.ca.now,
            namespace_listeners=() if foreign is None else (foreign.namespaces_changed,),
        )
        for informer in informers:
            app.cleanup_ctx.append(_owned(f"sigil-informer-{informer.path}", informer.run))
        if foreign is not None:
            app.cleanup_ctx.append(_owned("sigil-foreign-policy-watch", foreign.run))

        async def pod_cache(_app: web.Application) -> AsyncIterator[None]:
            await pods.start()
            yield
            await pods.aclose()

        app.cleanup_ctx.append(pod_cache)
        kube_settings = issuer.settings.server.kubernetes
        configmap = kube_settings.bundle_configmap if kube_settings is not None else None
        if configmap is not None and kube_settings is not None:
            namespace = resolve_namespace(kube_settings.bundle_configmap_namespace)
            if namespace is None:
                _log.warning("bundle_configmap.no_namespace", name=configmap)
            else:
                api = issuer.kube.api
                app.cleanup_ctx.append(
                    _owned(
                        "sigil-bundle-configmap",
                        lambda: publish_bundle_configmap(
                            issuer.ca, api, namespace=namespace, name=configmap
                        ),
                    )
                )
    for poller in pollers if pollers is not None else federation_pollers(issuer):
        app.cleanup_ctx.append(_owned(f"sigil-federation-{poller.peer.trust_domain}", poller.run))
    return app


def federation_pollers(issuer: Issuer) -> list[FederationPoller]:
    return [
        FederationPoller(peer, issuer.feed, issuer.metrics)
        for peer in issuer.settings.server.federates_with
    ]


def admin_app(issuer: Issuer) -> web.Application:
    """The admin API for the local Unix socket."""
    app = _base(issuer)
    app.router.add_routes(admin_table)
    app.router.add_routes(openapi_routes)
    return app


def federation_app(issuer: Issuer) -> web.Application:
    """The SPIFFE federation bundle endpoint (served over the ``https_web`` listener)."""
    app = _base(issuer)
    app.router.add_routes(bundle.federation_routes)
    return app
