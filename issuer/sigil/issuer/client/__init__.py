"""The node agent's client for the issuer: attestation, renewal, batched SVIDs, JWT-SVIDs and the bundle long poll.

This package is the only part of the issuer the node agent may import (an import-linter contract holds it to
``sigil.issuer.client`` itself), so it knows nothing of the server's internals: it speaks :mod:`sigil.issuer.agentapi.contract`
over HTTPS and turns RFC 9457 refusals back into the issuer's own error classes, so the agent catches
``PodOnOtherNodeError`` and not a status code. Import every name from here; the modules behind it are:

- ``api``: :class:`IssuerApi`, the interface the node agent depends on (``IssuerClient`` implements it);
- ``refusals``: :class:`Refusal`, what a refusal means to the caller (its reason, whether it is transient, whom
  it refuses);
- ``results``: the values the calls return (SVIDs, batch results, bundle, policy and node pod updates);
- ``transport``: SPIFFE server authentication, the agent SVID as client certificate, problems to errors;
- ``http11``: HTTP/1.1 with kept-alive connections (h11 on asyncio streams; no aiohttp in the agent), and
  :class:`UnexpectedAnswerError`, an ``OSError`` for an answer that is not the issuer's;
- ``calls``: :class:`IssuerClient`, one method per issuer endpoint;
- ``policy_delta``: a delta of the policy feed applied to the set held, checked against the server's digest;
- ``bootstrap``: :func:`fetch_bundle_insecure`, trust on first use for development agents.
"""

from __future__ import annotations

from sigil.issuer.agentapi.contract import PodRef, policy_response_body
from sigil.issuer.client.api import IssuerApi
from sigil.issuer.client.bootstrap import fetch_bundle_insecure
from sigil.issuer.client.calls import IssuerClient
from sigil.issuer.client.http11 import UnexpectedAnswerError
from sigil.issuer.client.policy_delta import PolicyDeltaError
from sigil.issuer.client.refusals import AGENT_BANNED, Refusal
from sigil.issuer.client.results import (
    AgentSvid,
    BundleUpdate,
    HeldPolicies,
    IssuedJwtSvid,
    IssuedX509Svid,
    NodePod,
    NodePodsUpdate,
    PolicyUpdate,
    X509SvidRequest,
    X509SvidResult,
)
from sigil.issuer.client.transport import error_from_problem, raise_for_problem
from sigil.issuer.tls import make_csr

__all__ = [
    "AGENT_BANNED",
    "AgentSvid",
    "BundleUpdate",
    "HeldPolicies",
    "IssuedJwtSvid",
    "IssuedX509Svid",
    "IssuerApi",
    "IssuerClient",
    "NodePod",
    "NodePodsUpdate",
    "PodRef",
    "PolicyDeltaError",
    "PolicyUpdate",
    "Refusal",
    "UnexpectedAnswerError",
    "X509SvidRequest",
    "X509SvidResult",
    "error_from_problem",
    "fetch_bundle_insecure",
    "make_csr",
    "policy_response_body",
    "raise_for_problem",
]
