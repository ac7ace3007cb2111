"""The admin verbs sent to a running server over its Unix socket (the CLI's path when a server is up).

Refusals come back as problem documents and are raised as the issuer's own errors, so the CLI prints the same
message whichever backend ran the verb.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any, cast

import aiohttp

from sigil.issuer.admin.backend import ADMIN_PREFIX as PREFIX
from sigil.issuer.client import raise_for_problem
from sigil.kit import Service

__all__ = ["SocketAdmin", "server_listening"]

Json = dict[str, Any]


def server_listening(path: Path) -> bool:
    """True when something accepts connections on the Unix socket ``path`` (a stale file does not count)."""
    if not path.is_socket():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


class SocketAdmin(Service):
    """:class:`~sigil.issuer.admin.AdminBackend` over the admin socket; ``async with SocketAdmin(path):``."""

    def __init__(self, path: Path) -> None:
        self._session = aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(path)))

    async def aclose(self) -> None:
        await self._session.close()

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        async with self._session.request(method, "http://sigil" + PREFIX + path, **kwargs) as reply:
            await raise_for_problem(reply)
            if reply.content_type == "application/json":
                return await reply.json()
            return await reply.read()

    async def authorities(self) -> list[Json]:
        return cast(list[Json], await self._call("GET", "/authorities"))

    async def authority_step(
        self, verb: str, kind: str, authority_id: str | None, *, force: bool = False
    ) -> Json:
        body = {"kind": kind, "authority_id": authority_id, "force": force}
        return cast(Json, await self._call("POST", f"/authorities/{verb}", json=body))

    async def show_authority(self, authority_id: str) -> Json:
        params = {"authority_id": authority_id}
        return cast(Json, await self._call("GET", "/authorities/show", params=params))

    async def upstream_step(self, verb: str, directory: str | None, *, force: bool = False) -> Json:
        body = {"directory": directory, "force": force}
        return cast(Json, await self._call("POST", f"/upstream/{verb}", json=body))

    async def upstream_show(self) -> list[Json]:
        return cast(list[Json], await self._call("GET", "/upstream"))

    async def bundle(self, fmt: str) -> bytes:
        return cast(bytes, await self._call("GET", "/bundle", params={"format": fmt}))

    async def mint_x509(self, spiffe_id: str, ttl: float | None, dns: list[str]) -> Json:
        body = {"spiffe_id": spiffe_id, "ttl": ttl, "dns": dns}
        return cast(Json, await self._call("POST", "/x509/mint", json=body))

    async def mint_jwt(self, spiffe_id: str, audience: list[str], ttl: float | None) -> Json:
        body = {"spiffe_id": spiffe_id, "audience": audience, "ttl": ttl}
        return cast(Json, await self._call("POST", "/jwt/mint", json=body))

    async def create_entry(
        self, spiffe_id: str, parent_id: str, selectors: list[str], dns: list[str]
    ) -> Json:
        body = {"spiffe_id": spiffe_id, "parent_id": parent_id, "selectors": selectors, "dns": dns}
        return cast(Json, await self._call("POST", "/entries", json=body))

    async def list_entries(self) -> list[Json]:
        return cast(list[Json], await self._call("GET", "/entries"))

    async def delete_entry(self, entry_id: str) -> None:
        await self._call("DELETE", f"/entries/{entry_id}")

    async def generate_token(self, ttl: float) -> Json:
        return cast(Json, await self._call("POST", "/tokens", json={"ttl": ttl}))

    async def apply_policies(self, file: str, text: str) -> Json:
        body = {"file": file, "text": text}
        return cast(Json, await self._call("POST", "/policies", json=body))

    async def delete_policy(self, kind: str, namespace: str, name: str) -> None:
        params = {"namespace": namespace} if namespace else {}
        await self._call("DELETE", f"/policies/{kind}/{name}", params=params)

    async def list_policies(self) -> Json:
        return cast(Json, await self._call("GET", "/policies"))

    async def effective_policy(
        self, pod: str, labels: dict[str, str] | None, port: int | None, default: str
    ) -> Json:
        params = {"pod": pod, "default": default}
        if labels is not None:
            params["labels"] = ",".join(f"{k}={v}" for k, v in labels.items())
        if port is not None:
            params["port"] = str(port)
        return cast(Json, await self._call("GET", "/policies/effective", params=params))

    async def list_agents(self) -> list[Json]:
        return cast(list[Json], await self._call("GET", "/agents"))

    async def show_agent(self, agent_id: str) -> Json:
        return cast(Json, await self._call("GET", "/agents/show", params={"agent_id": agent_id}))

    async def evict_agent(self, agent_id: str) -> None:
        await self._call("POST", "/agents/evict", json={"agent_id": agent_id})

    async def ban_agent(self, agent_id: str, *, banned: bool) -> None:
        verb = "ban" if banned else "unban"
        await self._call("POST", f"/agents/{verb}", json={"agent_id": agent_id})

    async def ready(self) -> tuple[bool, Json]:
        """Whether the server reports itself ready (its ``/ready``), and what it said."""
        async with self._session.get("http://sigil" + PREFIX + "/ready") as reply:
            return reply.status == 200, cast(Json, await reply.json(content_type=None))
