"""Liveness, readiness and Prometheus metrics, as SPIRE's health checks and telemetry offer them.

``/ready`` is false until the serving SVID exists and (with Kubernetes) the pod cache has synced, and again while
the server drains after SIGTERM, so a load balancer stops sending new agents before connections close.
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sigil.issuer.edge.parts import Issuer
from sigil.issuer.edge.routes.common import issuer_of

__all__ = ["readiness", "routes"]

routes = web.RouteTableDef()


@routes.get("/live")
async def live(_request: web.Request) -> web.Response:
    return web.json_response({"live": True})


@routes.get("/ready")
async def ready(request: web.Request) -> web.Response:
    return readiness(issuer_of(request))


def readiness(issuer: Issuer) -> web.Response:
    """``/ready``'s answer: 200 when ready, else 503, with what is missing (also served on the admin socket)."""
    synced = issuer.kube is None or issuer.kube.pods.synced
    ok = issuer.ready and synced and not issuer.draining
    return web.json_response(
        {"ready": ok, "pod_cache_synced": synced, "draining": issuer.draining},
        status=200 if ok else 503,
    )


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(issuer_of(request).metrics.registry)
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response
