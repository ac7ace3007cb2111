"""The agent's side of the issuer boundary: an issuer that did not answer becomes one error, retried with backoff.

The interface the agent calls (:class:`sigil.issuer.client.IssuerApi`) and the meaning of a refusal
(:class:`sigil.issuer.client.Refusal`: its reason, whether it is transient, whether it refuses one workload or the
agent's own SVID) belong to the issuer's client; this module only folds every "not now" into
:class:`IssuerUnreachableError`, so that each cache and feed has one thing to back off on:

- the issuer is away (connection refused, TLS or timeout) or says "not now" (a transient refusal): retried with
  backoff while the cache keeps serving what is still valid;
- the issuer refuses a workload (``Refusal.refuses_workload``): the workload gets ``PermissionDenied``;
- the issuer refuses the agent's own SVID (``Refusal.refuses_agent``): the agent attests again where its
  attestation method allows (``agent_svid.py``);
- anything else the issuer says is a refusal of the agent itself and is passed on.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from sigil.ca.bundle import TrustBundle
from sigil.ca.errors import SigilError
from sigil.ca.spiffe_id import TrustDomain
from sigil.issuer.client import Refusal, fetch_bundle_insecure
from sigil.node_agent.errors import IssuerUnreachableError

__all__ = ["call_issuer", "fetch_bundle_insecurely"]

_T = TypeVar("_T")


async def call_issuer(call: Awaitable[_T]) -> _T:
    """Await ``call``, turning every "the issuer is away" failure into :class:`IssuerUnreachableError`."""
    # The client's transport failures are all OSError (TLS's and UnexpectedAnswerError among them) or TimeoutError.
    try:
        return await call
    except (OSError, TimeoutError) as err:
        raise IssuerUnreachableError(f"{type(err).__name__}: {err}") from err
    except SigilError as err:
        refusal = Refusal.of(err)
        if refusal is not None and refusal.transient:
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
