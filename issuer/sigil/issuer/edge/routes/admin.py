"""The admin API on the local Unix socket: each route is one :class:`~sigil.issuer.admin.LocalAdmin` verb.

Only the socket's file mode (0600, in the server's data directory) guards it, as SPIRE guards its admin socket; it
is never served on a network listener.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from sigil.enforcer.errors import EnforcerError
from sigil.enforcer.flags import parse_pairs
from sigil.issuer.admin.backend import ADMIN_PREFIX, LocalAdmin
from sigil.issuer.agentapi.requests import need_str
from sigil.issuer.edge.problems import read_json
from sigil.issuer.edge.routes.common import issuer_of
from sigil.issuer.edge.routes.health import readiness
from sigil.issuer.errors import MalformedRequestError

__all__ = ["PREFIX", "routes"]

PREFIX = ADMIN_PREFIX
routes = web.RouteTableDef()


def _admin(request: web.Request) -> LocalAdmin:
    issuer = issuer_of(request)
    pods = None if issuer.kube is None else issuer.kube.pods
    return LocalAdmin(issuer.ca, issuer.registry, issuer.feed, policies=issuer.policies, pods=pods)


#: The longest duration a verb takes (a hundred years): more is a mistake, and past timedelta's range a crash.
_MAX_SECONDS = 100 * 365 * 86400


def _number(document: dict[str, Any], key: str) -> float | None:
    value = document.get(key)
    if value is None:
        return None
    # JSON numbers may be integers past any float, or 1e400 (infinity): both once failed as 500s (found by fuzzing).
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not 0 < value <= _MAX_SECONDS
    ):
        raise MalformedRequestError(
            f"{key!r} must be a positive number of seconds, at most {_MAX_SECONDS}"
        )
    return float(value)


def _strings(document: dict[str, Any], key: str) -> list[str]:
    value = document.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise MalformedRequestError(f"{key!r} must be a list of strings")
    return value


@routes.get(PREFIX + "/authorities")
async def authorities(request: web.Request) -> web.Response:
    return web.json_response(await _admin(request).authorities())


@routes.get(PREFIX + "/authorities/show")
async def show_authority(request: web.Request) -> web.Response:
    authority_id = request.query.get("authority_id")
    if not authority_id:
        raise MalformedRequestError("the authority_id query parameter is required")
    return web.json_response(await _admin(request).show_authority(authority_id))


@routes.post(PREFIX + "/authorities/{verb}")
async def authority_step(request: web.Request) -> web.Response:
    document = await read_json(request)
    authority_id = document.get("authority_id")
    force = document.get("force", False)
    if not isinstance(force, bool):
        raise MalformedRequestError("'force' must be true or false")
    result = await _admin(request).authority_step(
        request.match_info["verb"],
        need_str(document, "kind"),
        authority_id if isinstance(authority_id, str) else None,
        force=force,
    )
    return web.json_response(result)


@routes.get(PREFIX + "/upstream")
async def upstream_show(request: web.Request) -> web.Response:
    return web.json_response(await _admin(request).upstream_show())


@routes.post(PREFIX + "/upstream/{verb}")
async def upstream_step(request: web.Request) -> web.Response:
    document = await read_json(request)
    directory = document.get("directory")
    force = document.get("force", False)
    if not isinstance(force, bool):
        raise MalformedRequestError("'force' must be true or false")
    if directory is not None and not isinstance(directory, str):
        raise MalformedRequestError("'directory' must be a path")
    result = await _admin(request).upstream_step(request.match_info["verb"], directory, force=force)
    return web.json_response(result)


@routes.get(PREFIX + "/bundle")
async def bundle(request: web.Request) -> web.Response:
    return web.Response(body=await _admin(request).bundle(request.query.get("format", "spiffe")))


@routes.post(PREFIX + "/x509/mint")
async def mint_x509(request: web.Request) -> web.Response:
    document = await read_json(request)
    result = await _admin(request).mint_x509(
        need_str(document, "spiffe_id"), _number(document, "ttl"), _strings(document, "dns")
    )
    return web.json_response(result)


@routes.post(PREFIX + "/jwt/mint")
async def mint_jwt(request: web.Request) -> web.Response:
    document = await read_json(request)
    result = await _admin(request).mint_jwt(
        need_str(document, "spiffe_id"), _strings(document, "audience"), _number(document, "ttl")
    )
    return web.json_response(result)


@routes.get(PREFIX + "/entries")
async def list_entries(request: web.Request) -> web.Response:
    return web.json_response(await _admin(request).list_entries())


@routes.post(PREFIX + "/entries")
async def create_entry(request: web.Request) -> web.Response:
    document = await read_json(request)
    result = await _admin(request).create_entry(
        need_str(document, "spiffe_id"),
        need_str(document, "parent_id"),
        _strings(document, "selectors"),
        _strings(document, "dns"),
    )
    return web.json_response(result, status=201)


@routes.delete(PREFIX + "/entries/{entry_id}")
async def delete_entry(request: web.Request) -> web.Response:
    await _admin(request).delete_entry(request.match_info["entry_id"])
    return web.json_response({"deleted": request.match_info["entry_id"]})


@routes.post(PREFIX + "/tokens")
async def generate_token(request: web.Request) -> web.Response:
    document = await read_json(request)
    return web.json_response(await _admin(request).generate_token(_number(document, "ttl") or 3600))


@routes.get(PREFIX + "/policies")
async def list_policies(request: web.Request) -> web.Response:
    return web.json_response(await _admin(request).list_policies())


@routes.get(PREFIX + "/policies/effective")
async def effective_policy(request: web.Request) -> web.Response:
    query = request.query
    if "pod" not in query:
        raise MalformedRequestError("'pod' (NAMESPACE/NAME) is required")
    labels = None
    if "labels" in query:
        try:
            labels = parse_pairs("labels", query["labels"])
        except EnforcerError as err:
            raise MalformedRequestError(str(err)) from err
    port = query.get("port")
    # str.isdigit() is also true of "²", which int() refuses (found by fuzzing).
    if port is not None and not (port.isascii() and port.isdigit()):
        raise MalformedRequestError(f"port {port!r}: not a port (1-65535)")
    result = await _admin(request).effective_policy(
        query["pod"], labels, None if port is None else int(port), query.get("default", "allow")
    )
    return web.json_response(result)


@routes.post(PREFIX + "/policies")
async def apply_policies(request: web.Request) -> web.Response:
    document = await read_json(request)
    result = await _admin(request).apply_policies(
        need_str(document, "file"), need_str(document, "text")
    )
    return web.json_response(result)


@routes.delete(PREFIX + "/policies/{kind}/{name}")
async def delete_policy(request: web.Request) -> web.Response:
    kind, name = request.match_info["kind"], request.match_info["name"]
    namespace = request.query.get("namespace", "")
    await _admin(request).delete_policy(kind, namespace, name)
    return web.json_response({"deleted": {"kind": kind, "namespace": namespace, "name": name}})


@routes.get(PREFIX + "/agents")
async def list_agents(request: web.Request) -> web.Response:
    return web.json_response(await _admin(request).list_agents())


@routes.get(PREFIX + "/agents/show")
async def show_agent(request: web.Request) -> web.Response:
    agent_id = request.query.get("agent_id")
    if not agent_id:
        raise MalformedRequestError("the agent_id query parameter is required")
    return web.json_response(await _admin(request).show_agent(agent_id))


@routes.post(PREFIX + "/agents/{verb:evict|ban|unban}")
async def agent_step(request: web.Request) -> web.Response:
    verb, agent_id = request.match_info["verb"], need_str(await read_json(request), "agent_id")
    admin = _admin(request)
    if verb == "evict":
        await admin.evict_agent(agent_id)
    else:
        await admin.ban_agent(agent_id, banned=verb == "ban")
    return web.json_response({verb: agent_id})


@routes.get(PREFIX + "/ready")
async def ready(request: web.Request) -> web.Response:
    """The main listener's ``/ready``, for ``sigil-server healthcheck`` on the local socket."""
    return readiness(issuer_of(request))
