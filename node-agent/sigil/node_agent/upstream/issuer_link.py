"""The agent's side of the issuer boundary: what it needs from the client, and how failures are sorted.

The SVID cache depends on the :class:`IssuerApi` protocol, not on HTTP, so tests and the benchmark can drive it with
an in-process issuer; production passes :class:`sigil.issuer.client.IssuerClient`, which satisfies it.

Everything that can go wrong in a call falls in one of three bins, decided here once:

- the issuer is away (connection refused, TLS or timeout, a 5xx, ``rate_limited``): :class:`IssuerUnreachableError`,
  retried with backoff while the cache keeps serving what is still valid;
- the issuer refuses this workload (``not_entitled``, its pod gone or elsewhere): :func:`is_denial`, the workload
  gets ``PermissionDenied``;
- the issuer refuses the agent's own SVID (evicted, superseded by a copy's renewal, its node gone, its authority
  revoked, banned): :func:`refuses_agent`; the agent attests again where its attestation method allows
  (``agent_svid.py``);
- anything else the issuer says is a refusal of the agent itself and is passed on.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Sequence
from typing import Any, Protocol, TypeVar

import aiohttp

from sigil.ca.bundle import TrustBundle
from sigil.ca.errors import SigilError
from sigil.ca.keys import PrivateKey
from sigil.ca.spiffe_id import TrustDomain
from sigil.issuer.client import (
    AgentSvid,
    BundleUpdate,
    IssuedJwtSvid,
    X509SvidRequest,
    X509SvidResult,
    fetch_bundle_insecure,
)
from sigil.node_agent.errors import IssuerUnreachableError

__all__ = [
    "AGENT_BANNED",
    "IssuerApi",
    "call_issuer",
    "fetch_bundle_insecurely",
    "is_denial",
    "reason_of",
    "refuses_agent",
]

_T = TypeVar("_T")

#: Reasons (sigil.issuer.errors) that mean "not now", never "no".
_TRANSIENT = frozenset({"unavailable", "kubernetes_unavailable", "rate_limited", "internal_error"})
#: Reasons that refuse one workload: it is entitled to nothing (now).
_DENIALS = frozenset({"not_entitled", "pod_not_found", "pod_uid_mismatch", "pod_on_other_node"})
#: The reason that refuses the agent and its attestations alike, until an operator unbans it.
AGENT_BANNED = "agent_banned"
#: Reasons (sigil.issuer.errors, on every agent endpoint) that refuse the agent's SVID itself: every later call
#: with it will be refused too, so only a fresh attestation helps.
_AGENT_REFUSALS = frozenset(
    {
        "agent_not_attested",
        "agent_svid_superseded",
        "agent_node_gone",
        "agent_svid_invalid",
        AGENT_BANNED,
    }
)


class IssuerApi(Protocol):
    """The calls the agent makes; :class:`~sigil.issuer.client.IssuerClient` provides them over HTTPS."""

    @property
    def agent_svid(self) -> AgentSvid | None: ...

    @property
    def trust_bundle(self) -> TrustBundle: ...

    async def set_agent_svid(self, agent_svid: AgentSvid | None) -> None: ...

    async def attest_k8s(
        self, token: str, cluster: str, *, key: PrivateKey | None = None
    ) -> AgentSvid: ...

    async def attest_join_token(
        self, token: str, *, key: PrivateKey | None = None
    ) -> AgentSvid: ...

    async def renew(self, *, key: PrivateKey | None = None) -> AgentSvid: ...

    async def batch_x509_svids(
        self, requests: Sequence[X509SvidRequest]
    ) -> list[X509SvidResult]: ...

    async def jwt_svid(
        self,
        *,
        audience: Sequence[str],
        # sigil.issuer.wire.PodRef: the wire module is the client's to import, not ours (import-linter).
        pod: Any = None,
        selectors: Sequence[str] = (),
        spiffe_id: str | None = None,
    ) -> list[IssuedJwtSvid]: ...

    async def bundle(
        self,
        after_sequence: int | None = None,
        *,
        after_revision: str | None = None,
        wait: float | None = None,
    ) -> BundleUpdate: ...


def reason_of(err: BaseException) -> str:
    """The issuer's stable reason code carried by ``err`` ("" for anything else)."""
    reason = getattr(err, "reason", "")
    return reason if isinstance(reason, str) else ""


def is_denial(err: BaseException) -> bool:
    """True when the issuer refused a workload (as opposed to being away or refusing the agent)."""
    return reason_of(err) in _DENIALS


def refuses_agent(err: BaseException) -> bool:
    """True when the issuer refused the agent's own SVID (as opposed to one workload, or being away)."""
    return reason_of(err) in _AGENT_REFUSALS


async def call_issuer(call: Awaitable[_T]) -> _T:
    """Await ``call``, turning every "the issuer is away" failure into :class:`IssuerUnreachableError`."""
    try:
        return await call
    except (aiohttp.ClientError, ssl.SSLError, OSError, TimeoutError) as err:
        raise IssuerUnreachableError(f"{type(err).__name__}: {err}") from err
    except SigilError as err:
        if reason_of(err) in _TRANSIENT:
            raise IssuerUnreachableError(str(err)) from err
        raise


async def fetch_bundle_insecurely(url: str, trust_domain: TrustDomain) -> TrustBundle:
    """The issuer's bundle fetched without verifying the server: trust on first use, for development only."""
    update = await call_issuer(fetch_bundle_insecure(url, trust_domain))
    if update.trust_domain != trust_domain:
        raise IssuerUnreachableError(
            f"the issuer serves trust domain {update.trust_domain}, not {trust_domain}"
        )
    return update.bundle
