"""Every ``sigil-server`` admin verb as one async interface with JSON-ready results.

The CLI talks to :class:`AdminBackend` and does not care which one it got: :class:`LocalAdmin` works on the
datastore in-process (no server running; also what the admin socket's handlers call), and
:class:`~sigil.issuer.admin.client.SocketAdmin` sends the same verbs to a running server, so a taint done by hand
reaches the server's waiting agents at once instead of at the next tick.
"""

from __future__ import annotations

from datetime import timedelta

import structlog
from cryptography.hazmat.primitives import serialization

from sigil.ca.authority import AuthorityKind, AuthorityStatus
from sigil.ca.errors import (
    AuthorityError,
    InvalidSpiffeIdError,
    JwtSvidError,
    SigilError,
    TtlError,
)
from sigil.ca.reserved_ids import join_agent_id
from sigil.ca.service import CertificateAuthority
from sigil.ca.spiffe_id import SpiffeId
from sigil.enforcer.policy.defaults import DefaultPolicy
from sigil.issuer.admin.contract import ADMIN_PREFIX, AdminBackend, Json
from sigil.issuer.admin.documents import agent_json, authority_json, entry_json, outstanding_json
from sigil.issuer.admin.upstream import upstream_show, upstream_step
from sigil.issuer.bundles.feed import BundleFeed
from sigil.issuer.datastore.agentrecords import AgentRecords
from sigil.issuer.datastore.registry import Registry, refuse_reserved
from sigil.issuer.errors import (
    AuthorityRefusedError,
    MalformedRequestError,
    NotFoundError,
    UnavailableError,
)
from sigil.issuer.kube.podcache import PodCache
from sigil.issuer.policies.feed import PolicyFeed
from sigil.issuer.policies.pod_view import pod_effective

__all__ = [
    "ADMIN_PREFIX",
    "AdminBackend",
    "LocalAdmin",
    "agent_json",
    "authority_json",
    "entry_json",
    "outstanding_json",
]


_log = structlog.get_logger(__name__)


def _agent_id(value: str) -> str:
    try:
        return str(SpiffeId.parse(value))
    except SigilError as err:
        raise MalformedRequestError(f"agent ID {value!r}: {err}") from err


def _spiffe_id(value: str, what: str) -> SpiffeId:
    """``value`` as a SPIFFE ID; a malformed one is the request's fault (a 400), not the server's."""
    try:
        return SpiffeId.parse(value)
    except SigilError as err:
        raise MalformedRequestError(f"{what} {value!r}: {err}") from err


def _seconds(value: float | None) -> timedelta | None:
    return timedelta(seconds=value) if value else None


class LocalAdmin:
    """The verbs on an open CA and registry; ``feed`` (in a server) is told of changes agents must see now."""

    def __init__(
        self,
        ca: CertificateAuthority,
        registry: Registry,
        feed: BundleFeed | None = None,
        *,
        policies: PolicyFeed | None = None,
        pods: PodCache | None = None,
    ) -> None:
        self._ca = ca
        self._registry = registry
        self._feed = feed
        self._policies = policies
        self._pods = pods
        self._agents = AgentRecords(ca.store.engine)

    def _policy_feed(self) -> PolicyFeed:
        # The policy set is the running server's (its directory, its watches); a policy written to the table
        # without one would be refused by nobody, so the verbs need the server.
        if self._policies is None:
            raise UnavailableError("policy verbs need a running sigil-server (its admin socket)")
        return self._policies

    async def apply_policies(self, file: str, text: str) -> Json:
        return {"applied": await self._policy_feed().apply_admin(text, file=file)}

    async def delete_policy(self, kind: str, namespace: str, name: str) -> None:
        await self._policy_feed().delete_admin(kind, namespace, name)

    async def list_policies(self) -> Json:
        feed = self._policy_feed()
        return {"revision": feed.revision, "policies": feed.listing()}

    async def effective_policy(
        self, pod: str, labels: dict[str, str] | None, port: int | None, default: str
    ) -> Json:
        try:
            chosen = DefaultPolicy(default)
        except ValueError:
            choices = ", ".join(d.value for d in DefaultPolicy)
            raise MalformedRequestError(f"default {default!r} is not one of {choices}") from None
        return pod_effective(
            self._policy_feed(),
            self._pods,
            pod=pod,
            labels=labels,
            port=port,
            default=chosen,
            trust_domain=self._ca.settings.trust_domain,
        )

    async def authorities(self) -> list[Json]:
        return [authority_json(a) for a in self._ca.authorities()]

    async def show_authority(self, authority_id: str) -> Json:
        found = [a for a in self._ca.authorities() if a.authority_id == authority_id]
        if not found:
            raise NotFoundError(f"authority {authority_id}")
        return {
            **authority_json(found[0]),
            "outstanding": outstanding_json(await self._ca.outstanding(authority_id)),
        }

    async def authority_step(
        self, verb: str, kind: str, authority_id: str | None, *, force: bool = False
    ) -> Json:
        try:
            which = AuthorityKind(kind)
        except ValueError as err:
            raise MalformedRequestError(f"kind {kind!r} is not x509 or jwt") from err
        try:
            result = await self._step(verb, which, authority_id, force=force)
        except AuthorityError as err:
            raise AuthorityRefusedError(authority_id or "", str(err)) from err
        if self._feed is not None:
            await self._feed.publish()
        return result

    async def _step(
        self, verb: str, kind: AuthorityKind, authority_id: str | None, *, force: bool
    ) -> Json:
        if verb == "prepare":
            return {"authority": authority_json(await self._ca.prepare(kind))}
        if authority_id is None:
            wanted = AuthorityStatus.PREPARED if verb == "activate" else AuthorityStatus.OLD
            candidates = [
                a
                for a in self._ca.authorities(kind)
                if a.status is wanted and (verb != "revoke" or a.tainted)
            ]
            if len(candidates) != 1:
                raise MalformedRequestError(
                    f"say which {kind} authority with --id ({len(candidates)} candidates)"
                )
            authority_id = candidates[0].authority_id
        if verb == "activate":
            return {"authority": authority_json(await self._ca.activate(kind, authority_id))}
        if verb == "taint":
            count = await self._ca.taint(kind, authority_id)
            return {"authority_id": authority_id, "kind": kind.value, "reissue_due": count}
        if verb == "revoke":
            cut = await self._ca.outstanding(authority_id) if force else None
            revoked = await self._ca.revoke(kind, authority_id, force=force)
            result: Json = {"authority": authority_json(revoked)}
            if cut is not None and cut.count:
                _log.warning(
                    "authority.revoked_in_use",
                    authority_id=authority_id,
                    cut=cut.count,
                    holders=len(cut.holders),
                )
                result["cut"] = outstanding_json(cut)
            return result
        raise MalformedRequestError(f"unknown authority verb {verb!r}")

    async def upstream_step(self, verb: str, directory: str | None, *, force: bool = False) -> Json:
        result = await upstream_step(self._ca, verb, directory, force=force)
        if "cut" in result:
            _log.warning("upstream.retired_in_use", cut=result["cut"]["remaining"])
        if self._feed is not None:
            # A new root, a taint or a dropped root: agents must see it now, not at the next tick.
            await self._feed.publish()
        return result

    async def upstream_show(self) -> list[Json]:
        return await upstream_show(self._ca)

    async def bundle(self, fmt: str) -> bytes:
        bundle = self._ca.bundle()
        return bundle.to_pem() if fmt == "pem" else bundle.to_json() + b"\n"

    async def mint_x509(self, spiffe_id: str, ttl: float | None, dns: list[str]) -> Json:
        wanted = _spiffe_id(spiffe_id, "SPIFFE ID")
        # Agents get their IDs by attestation and the server makes its own SVID at start; a minted copy of either
        # is only a credential to impersonate them outside every check.
        refuse_reserved(wanted, source="x509 mint")
        try:
            svid = await self._ca.mint_x509_svid(wanted, ttl=_seconds(ttl), dns_names=dns)
        except (InvalidSpiffeIdError, TtlError) as err:
            raise MalformedRequestError(str(err)) from err
        if svid.private_key is None:  # cannot happen: minted without a CSR, so the CA made the key
            raise TypeError("x509 mint returned no key")
        key_pem = svid.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return {
            "spiffe_id": str(svid.spiffe_id),
            "serial": svid.serial_hex,
            "expires_at": svid.not_after.isoformat(),
            "chain_pem": svid.chain_pem().decode(),
            "key_pem": key_pem.decode(),
            "bundle_pem": self._ca.bundle().to_pem().decode(),
        }

    async def mint_jwt(self, spiffe_id: str, audience: list[str], ttl: float | None) -> Json:
        wanted = _spiffe_id(spiffe_id, "SPIFFE ID")
        refuse_reserved(wanted, source="jwt mint")
        try:
            svid = await self._ca.mint_jwt_svid(wanted, audience=audience, ttl=_seconds(ttl))
        except (InvalidSpiffeIdError, JwtSvidError, TtlError) as err:
            # No audience, a root ID, a TTL past the key: the request's mistakes (found by fuzzing).
            raise MalformedRequestError(str(err)) from err
        return {
            "token": svid.token,
            "spiffe_id": str(svid.spiffe_id),
            "expiry": svid.expiry.isoformat(),
        }

    async def create_entry(
        self, spiffe_id: str, parent_id: str, selectors: list[str], dns: list[str]
    ) -> Json:
        try:
            entry = await self._registry.create_entry(
                _spiffe_id(spiffe_id, "SPIFFE ID"),
                _spiffe_id(parent_id, "parent ID"),
                selectors,
                now=self._ca.now(),
                dns_names=dns,
            )
        except ValueError as err:
            raise MalformedRequestError(str(err)) from err
        return entry_json(entry)

    async def list_entries(self) -> list[Json]:
        return [entry_json(e) for e in await self._registry.entries()]

    async def delete_entry(self, entry_id: str) -> None:
        if not await self._registry.delete_entry(entry_id):
            raise NotFoundError(f"entry {entry_id}")

    async def generate_token(self, ttl: float) -> Json:
        token = await self._registry.generate_join_token(
            ttl=timedelta(seconds=ttl), now=self._ca.now()
        )
        agent = join_agent_id(self._ca.settings.trust_domain, token.agent_suffix)
        return {
            "token": token.token,
            "agent_id": str(agent),
            "expires_at": token.expires_at.isoformat(),
        }

    async def list_agents(self) -> list[Json]:
        return [agent_json(a) for a in await self._agents.list()]

    async def show_agent(self, agent_id: str) -> Json:
        agent = await self._agents.get(_agent_id(agent_id))
        if agent is None:
            raise NotFoundError(f"agent {agent_id}")
        return agent_json(agent)

    async def evict_agent(self, agent_id: str) -> None:
        if not await self._agents.evict(_agent_id(agent_id)):
            raise NotFoundError(f"agent {agent_id}")

    async def ban_agent(self, agent_id: str, *, banned: bool) -> None:
        if not await self._agents.set_banned(_agent_id(agent_id), banned, now=self._ca.now()):
            raise NotFoundError(f"agent {agent_id}")
