"""JWT-SVIDs cached per (SPIFFE ID, audiences), fetched from the issuer when missing or past half-life.

SPIRE's agent keeps JWT-SVIDs per entry and audience and refreshes them once past half-life (reference §4), so a
workload asking for a token on every request does not cost the issuer a signature each time. The audiences are a
set: ``{"a", "b"}`` and ``{"b", "a"}`` share a token. While the issuer is away, a cached token that has not expired
is still served; an expired one never is. The cache holds at most ``max_size`` tokens (SPIRE's
``jwt_svid_cache_max_size`` is 1000), dropping expired ones first and then the oldest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from sigil.ca.errors import SigilError
from sigil.ca.spiffe_id import SpiffeId
from sigil.issuer.client import IssuerApi, Refusal
from sigil.node_agent.errors import (
    IdentityUnavailableError,
    IssuerUnreachableError,
    NotEntitledError,
)
from sigil.node_agent.identity_source import WorkloadJwtSvid
from sigil.node_agent.rotation import jwt_refresh_at
from sigil.node_agent.svid_cache.workload import CachedJwt, Workload
from sigil.node_agent.upstream.issuer_link import call_issuer

__all__ = ["JwtSvidCache"]

_Key = tuple[SpiffeId, tuple[str, ...]]


class JwtSvidCache:
    """Fetches and keeps JWT-SVIDs; ``on_unreachable`` tells the owner the issuer is away."""

    def __init__(
        self,
        issuer: IssuerApi,
        *,
        clock: Callable[[], datetime],
        on_unreachable: Callable[[], None],
        on_reachable: Callable[[], None],
        on_refused: Callable[[BaseException], None] | None = None,
        max_size: int = 1000,
    ) -> None:
        self._issuer = issuer
        self._clock = clock
        self._on_unreachable = on_unreachable
        self._on_reachable = on_reachable
        self._on_refused = on_refused
        self._max_size = max_size
        self._tokens: dict[_Key, CachedJwt] = {}

    def __len__(self) -> int:
        return len(self._tokens)

    async def get(
        self,
        workload: Workload,
        spiffe_id: SpiffeId,
        audiences: Sequence[str],
        *,
        issuer_down: bool,
    ) -> WorkloadJwtSvid:
        """A token for ``spiffe_id`` and ``audiences``; the caller has checked the workload's entitlement."""
        key: _Key = (spiffe_id, tuple(sorted(set(audiences))))
        now = self._clock()
        cached = self._tokens.get(key)
        if cached is not None and now < cached.refresh_at:
            return cached.svid
        still_valid = cached is not None and cached.expires_at > now
        if issuer_down:
            if cached is not None and still_valid:
                return cached.svid
            raise IdentityUnavailableError("the issuer is unreachable and no JWT-SVID is cached")
        try:
            issued = await call_issuer(
                self._issuer.jwt_svid(
                    audience=list(key[1]),
                    pod=workload.pod,
                    selectors=workload.selectors if workload.pod is None else (),
                    spiffe_id=str(spiffe_id),
                )
            )
        except IssuerUnreachableError as err:
            self._on_unreachable()
            if cached is not None and still_valid:
                return cached.svid
            raise IdentityUnavailableError(str(err)) from err
        except SigilError as err:
            refusal = Refusal.of(err)
            if refusal is not None and refusal.refuses_workload:
                raise NotEntitledError(str(spiffe_id)) from err
            if refusal is not None and refusal.refuses_agent:
                # The agent itself is refused (it attests again if it can): what is still valid is served.
                if self._on_refused is not None:
                    self._on_refused(err)
                if cached is not None and still_valid:
                    return cached.svid
            raise IdentityUnavailableError(str(err)) from err
        self._on_reachable()
        mine = [svid for svid in issued if svid.spiffe_id == spiffe_id]
        if not mine:
            raise NotEntitledError(str(spiffe_id))
        token = mine[0]
        # PyJWT is imported with the first JWT-SVID, not at start: most workloads never ask for one, and importing
        # it costs every node about 1 MB (sigil/ca/jwk.py says why).
        import jwt

        try:
            kid = str(jwt.get_unverified_header(token.token).get("kid", ""))
        except jwt.InvalidTokenError as err:
            raise IdentityUnavailableError("the issuer returned a malformed JWT-SVID") from err
        entry = CachedJwt(
            svid=WorkloadJwtSvid(spiffe_id=spiffe_id, token=token.token),
            expires_at=token.expires_at,
            refresh_at=jwt_refresh_at(now, token.expires_at),
            kid=kid,
        )
        self._tokens.pop(key, None)
        self._tokens[key] = entry
        self._prune(now)
        return entry.svid

    def drop_signed_by(self, key_ids: frozenset[str]) -> int:
        """Forget tokens signed by tainted keys, so that the next request fetches a fresh one."""
        stale = [k for k, v in self._tokens.items() if v.kid in key_ids]
        for key in stale:
            del self._tokens[key]
        return len(stale)

    def _prune(self, now: datetime) -> None:
        if len(self._tokens) <= self._max_size:
            return
        for key in [k for k, v in self._tokens.items() if v.expires_at <= now]:
            del self._tokens[key]
        while len(self._tokens) > self._max_size:
            del self._tokens[next(iter(self._tokens))]
