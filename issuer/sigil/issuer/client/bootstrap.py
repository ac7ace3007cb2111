"""Insecure bootstrap: the issuer's bundle fetched without verifying who answers. For development only.

A node agent must know its trust domain's bundle before it can tell the real issuer from an impostor. In production
the bundle comes with the deployment (a ConfigMap or file); for a laptop or a throw-away cluster SPIRE offers
``insecure_bootstrap``, trust on first use, and this is Sigil's. It lives here, next to the transport it switches
off, so that nothing outside the client has to reach into how the client verifies servers.
"""

from __future__ import annotations

import ssl

from sigil.ca.bundle import TrustBundle
from sigil.ca.spiffe_id import TrustDomain
from sigil.issuer.client.calls import IssuerClient
from sigil.issuer.client.results import AgentSvid, BundleUpdate

__all__ = ["fetch_bundle_insecure"]


class _UnverifiedClient(IssuerClient):
    """A client that verifies nothing: the server's certificate is neither chained nor checked for its SPIFFE ID."""

    async def _ssl(self, anonymous: bool) -> tuple[ssl.SSLContext, AgentSvid | None]:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context, None

    def _check_server(self, ssl_object: ssl.SSLObject | None) -> None:
        return


async def fetch_bundle_insecure(url: str, trust_domain: TrustDomain) -> BundleUpdate:
    """The issuer's bundles as whoever answers at ``url`` says they are. INSECURE: for development only.

    No certificate is verified, so anyone on the path can hand over a bundle of their own and then impersonate the
    issuer (and, through it, every workload) for as long as that bundle is trusted. Use it only to bootstrap a
    development agent that has no bundle yet, and keep what it returns for later starts, as the node agent's
    ``insecure_bootstrap`` does; never when a bundle can be distributed with the deployment.

    ``trust_domain`` is the one the caller expects; the answer's :attr:`~BundleUpdate.trust_domain` says which the
    server serves, and checking that they agree is the caller's. Failures are those of
    :meth:`IssuerClient.bundle <sigil.issuer.client.IssuerClient.bundle>` (``OSError`` including TLS errors,
    ``TimeoutError``, issuer errors).
    """
    async with _UnverifiedClient(url, bundle=TrustBundle(trust_domain)) as client:
        return await client.bundle()
