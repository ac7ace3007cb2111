"""The main listener's TLS: the server's own SVID, renewed by itself, and agents' SVIDs verified the SPIFFE way.

The server holds ``spiffe://TD/sigil/server`` from its own CA, so agents check it like any SVID. Its certificate
and the trust anchors for client certificates change with every renewal and rotation, and a listening socket's
context cannot be swapped; so the socket's context is a front whose SNI callback (called on every handshake, with
or without SNI) hands each new connection the current context. Existing connections keep theirs.

Client certificates are optional at the TLS layer, because attestation comes before an agent has one; the handlers
that need an agent go through :mod:`sigil.issuer.agents.authentication`, which checks the certificate again on every request.
Sessions are never resumed (:func:`no_resumption`).
"""

from __future__ import annotations

import asyncio
import ssl
from datetime import datetime

from sigil.ca.reserved_ids import server_id
from sigil.ca.service import CertificateAuthority
from sigil.ca.x509svid import X509Svid
from sigil.issuer.tls import load_identity

__all__ = ["ServingIdentity", "no_resumption"]


def no_resumption(context: ssl.SSLContext) -> None:
    """No TLS session resumption on ``context``: every connection presents and proves its certificate afresh.

    A resumed session carries the client certificate cached when the session began, so an agent could resume a
    session from before its SVID expired or its authority was revoked. No session tickets (RFC 5077, and TLS 1.3's
    NewSessionTicket: ``num_tickets = 0``); the per-request check (:mod:`sigil.issuer.agents.authentication`) catches what a
    session-ID cache could still let through.
    """
    context.options |= ssl.OP_NO_TICKET
    context.num_tickets = 0


class ServingIdentity:
    """The server's SVID and the SSL context built from it and the current bundle."""

    def __init__(self, ca: CertificateAuthority, *, dns_names: tuple[str, ...]) -> None:
        self._ca = ca
        self._dns_names = dns_names
        self.spiffe_id = server_id(ca.settings.trust_domain)
        self._svid: X509Svid | None = None
        self._bundle_sequence = -1
        self._current: ssl.SSLContext | None = None
        self.front = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.front.minimum_version = ssl.TLSVersion.TLSv1_2
        # OpenSSL's context switch (SSL_set_SSL_CTX) takes the certificate and trust store of the new context but
        # keeps the verify mode of the one the connection started with, so the front must ask for client certs.
        self.front.verify_mode = ssl.CERT_OPTIONAL
        no_resumption(self.front)
        self.front.sni_callback = self._pick

    def _pick(self, ssl_object: ssl.SSLObject, _name: str | None, _ctx: ssl.SSLContext) -> None:
        if self._current is not None:
            ssl_object.context = self._current

    @property
    def svid(self) -> X509Svid | None:
        return self._svid

    def due(self, now: datetime) -> bool:
        """True when the SVID is missing, past half its life, signed by a tainted authority, or the bundle changed."""
        if self._svid is None or self._bundle_sequence != self._ca.bundle().sequence:
            return True
        if self._svid.authority_id in self._ca.tainted_authority_ids():
            # Renewed at once, like an agent's workloads: the authority is about to be revoked.
            return True
        leaf = self._svid.leaf
        half = (
            leaf.not_valid_before_utc + (leaf.not_valid_after_utc - leaf.not_valid_before_utc) / 2
        )
        return now >= half

    async def renew(self) -> None:
        """Mint a fresh serving SVID (the CA generates its key) and make it the one new connections get."""
        svid = await self._ca.mint_x509_svid(
            self.spiffe_id, dns_names=self._dns_names, holder=str(self.spiffe_id)
        )
        bundle = self._ca.bundle()
        context = await asyncio.to_thread(_server_context, svid, bundle.to_pem())
        self._svid, self._current, self._bundle_sequence = svid, context, bundle.sequence


def _server_context(svid: X509Svid, anchors_pem: bytes) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_OPTIONAL
    no_resumption(context)
    context.load_verify_locations(cadata=anchors_pem.decode())
    if svid.private_key is None:
        raise TypeError("the serving SVID was minted without its key")
    load_identity(context, svid.chain, svid.private_key)
    return context
