"""``ssl.SSLContext`` builders that present the workload's SVID and accept peers by SPIFFE rules, not hostnames.

The problem: SPIFFE asks that a peer chain to the bundle *of its own trust domain* (X509-SVID.md §5), and
Python's ssl module cannot run a custom verifier during the handshake: it has one OpenSSL store per context
and no verify callback. Python 3.13 added ``get_verified_chain``/``get_unverified_chain`` publicly; 3.10-3.12
have them only on the private ``_sslobj``. The design, fail-closed at every step:

1. **TLS gate.** ``CERT_REQUIRED`` (a client without a certificate is refused by OpenSSL), hostname checks off,
   TLS 1.2 at least, and the union of every trust domain's anchors as the store. OpenSSL thus refuses anyone
   who chains to none of them; passing this gate proves nothing about *which* domain vouches.
2. **SPIFFE check, inside the handshake.** The contexts built here create :class:`_SpiffeSSLObject` (asyncio)
   and :class:`_SpiffeSSLSocket` (blocking sockets) whose ``do_handshake`` verifies the presented chain with
   :class:`~sigil.enforcer.verify.SvidVerifier` against the peer's own trust domain (plus the caller's
   expectation of the server's ID) as soon as OpenSSL reports the handshake done, and raises
   ``ssl.SSLCertVerificationError`` (caused by the :class:`SvidVerificationError`) when it fails. Every user of
   the context (asyncio streams, aiohttp servers and clients) sees a failed handshake; no application byte
   flows, and the verified peer waits on the TLS object (:func:`peer_of`). The chain comes from the public
   3.13 method, else the private one; if neither exists only the leaf is checked, which refuses any chain that
   needs intermediates (never accepts more).
3. **Rotation.** A context subscribes to its :class:`~sigil.enforcer.sources.IdentitySource`; on each update (on
   the loop's thread, where asyncio creates TLS objects, so no handshake is being set up concurrently) it calls
   ``load_cert_chain`` again and adds new anchors; new handshakes present the new SVID. Anchors that leave a
   bundle stay in OpenSSL's store (it cannot remove them) but leave the verifier at once, which is the check
   that decides. The key reaches OpenSSL through a pipe (``/dev/fd/N``), never a file on disk.
4. **Resumption.** Server contexts issue no session tickets (TLS 1.2's RFC 5077 and TLS 1.3's RFC 8446 §4.6.1).
   A ticket comes back carrying the client's leaf but not its chain (OpenSSL does not serialise the peer
   chain), so step 2 could not verify a ticket-resumed session at all. Without tickets a TLS 1.3 client always
   makes a full handshake, and a TLS 1.2 client can resume only from this process's session-ID cache, whose
   sessions keep the presented chain: step 2 then verifies it again against today's bundles and clock, so a
   resumed session of an expired SVID, or of one whose authority left the bundle, is refused like a new one.
"""

from __future__ import annotations

import ssl
import weakref
from collections.abc import Callable
from typing import Any, cast

from sigil.ca.spiffe_id import SpiffeId, TrustDomain
from sigil.enforcer.bundles import BundleSet
from sigil.enforcer.errors import SvidVerificationError
from sigil.enforcer.sources import IdentitySource, X509Material
from sigil.enforcer.tls_setup import load_identity, spiffe_context
from sigil.enforcer.verify import Clock, Refusal, SvidVerifier, VerifiedSvid

__all__ = [
    "PeerRule",
    "RefusalHook",
    "SpiffeTls",
    "client_context",
    "load_identity",
    "peer_chain",
    "peer_of",
    "pinned_client_context",
    "server_context",
    "spiffe_context",
]

PeerRule = SpiffeId | TrustDomain | Callable[[SpiffeId], bool]
"""Which server a client accepts: one ID, any ID of one trust domain, or a predicate."""

RefusalHook = Callable[[SvidVerificationError], None]
"""Called with every refusal a context makes during a handshake (to log and count it)."""


class _SpiffeContext(ssl.SSLContext):
    """An SSLContext whose TLS objects verify the peer by SPIFFE rules when the handshake completes."""

    sigil_verifier: SvidVerifier
    sigil_expect: PeerRule | None
    sigil_peer_required: bool
    sigil_on_refused: RefusalHook | None


def _check(tls: ssl.SSLObject | ssl.SSLSocket) -> VerifiedSvid | None:
    context = cast(_SpiffeContext, tls.context)
    chain = peer_chain(tls)
    try:
        if not chain:
            if not context.sigil_peer_required:
                return None
            raise SvidVerificationError(Refusal.NO_CERTIFICATE, "the peer presented no certificate")
        verified = context.sigil_verifier.verify(chain)
        expect = context.sigil_expect
        if expect is not None and not _matches(expect, verified.spiffe_id):
            raise SvidVerificationError(
                Refusal.UNEXPECTED_PEER,
                f"expected {_describe(expect)}",
                spiffe_id=str(verified.spiffe_id),
            )
    except SvidVerificationError as err:
        if context.sigil_on_refused is not None:
            context.sigil_on_refused(err)
        refusal = ssl.SSLCertVerificationError(f"SPIFFE verification failed: {err}")
        refusal.verify_message = err.reason
        raise refusal from err
    return verified


class _SpiffeSSLObject(ssl.SSLObject):
    """asyncio's TLS object, holding the handshake until the peer passed the SPIFFE check."""

    sigil_peer: VerifiedSvid | None = None

    def do_handshake(self) -> None:
        super().do_handshake()
        self.sigil_peer = _check(self)


class _SpiffeSSLSocket(ssl.SSLSocket):
    """A blocking TLS socket, holding the handshake until the peer passed the SPIFFE check."""

    sigil_peer: VerifiedSvid | None = None

    def do_handshake(self, block: bool = False) -> None:
        super().do_handshake(block)
        self.sigil_peer = _check(self)


_SpiffeContext.sslobject_class = _SpiffeSSLObject
_SpiffeContext.sslsocket_class = _SpiffeSSLSocket


def peer_of(tls: object) -> VerifiedSvid | None:
    """The peer a context built here verified on ``tls`` (an SSLObject or SSLSocket), else None."""
    return cast(VerifiedSvid | None, getattr(tls, "sigil_peer", None))


def peer_chain(tls: ssl.SSLObject | ssl.SSLSocket) -> list[bytes]:
    """The chain the peer presented, leaf first, as DER; empty when it presented none."""
    leaf = tls.getpeercert(binary_form=True)
    if not leaf:
        # Asked first: for a peer that sent no certificate, 3.11's private accessor yields [None], not [].
        return []
    public = getattr(tls, "get_unverified_chain", None)  # Python 3.13+: a list of DER bytes
    if public is not None:
        return list(public() or ())
    private = getattr(getattr(tls, "_sslobj", None), "get_unverified_chain", None)
    if private is not None:
        # 3.10-3.12: _ssl.Certificate objects; CPython puts the leaf first on the server side too.
        certs = [cert for cert in private() or () if cert is not None]
        return [cert.public_bytes(ssl._ssl.ENCODING_DER) for cert in certs]  # type: ignore[attr-defined]
    return [leaf]


class SpiffeTls:
    """The contexts of one workload: its SVID from ``source``, peers checked by one shared verifier.

    Every context built here follows the source (see the module docstring) for as long as it is alive.
    """

    def __init__(
        self,
        source: IdentitySource,
        *,
        clock: Clock | None = None,
        cache_size: int = 10_000,
        on_refused: RefusalHook | None = None,
    ) -> None:
        self._source = source
        self._on_refused = on_refused
        material = source.current()
        self.verifier = SvidVerifier(material.bundles, clock=clock, cache_size=cache_size)
        self._contexts: weakref.WeakSet[_SpiffeContext] = weakref.WeakSet()
        self._anchors = material.bundles.union_pem()
        source.subscribe(self._update)

    @property
    def spiffe_id(self) -> SpiffeId:
        """The workload's own SPIFFE ID."""
        return self._source.current().spiffe_id

    def close(self) -> None:
        """Stop following the source; contexts keep the last SVID they loaded."""
        self._source.unsubscribe(self._update)

    def server_context(self, *, peer_required: bool = True) -> ssl.SSLContext:
        """A server context demanding (or, with ``peer_required=False``, accepting) a client SVID."""
        context = self._build(ssl.PROTOCOL_TLS_SERVER, expect=None)
        # No tickets: see the module docstring's step 4 (TLS 1.2 tickets, then TLS 1.3 ones).
        context.options |= ssl.OP_NO_TICKET
        context.num_tickets = 0
        context.sigil_peer_required = peer_required
        context.verify_mode = ssl.CERT_REQUIRED if peer_required else ssl.CERT_OPTIONAL
        return context

    def client_context(self, *, expect: PeerRule | None = None) -> ssl.SSLContext:
        """A client context accepting a server whose SVID verifies and satisfies ``expect``."""
        return self._build(ssl.PROTOCOL_TLS_CLIENT, expect=expect)

    def _build(self, protocol: ssl._SSLMethod, *, expect: PeerRule | None) -> _SpiffeContext:
        context = spiffe_context(_SpiffeContext(protocol), self._anchors)
        context.sigil_verifier = self.verifier
        context.sigil_expect = expect
        context.sigil_peer_required = True
        context.sigil_on_refused = self._on_refused
        _load_identity(context, self._source.current())
        self._contexts.add(context)
        return context

    def _update(self, material: X509Material) -> None:
        anchors = material.bundles.union_pem()
        added = anchors != self._anchors
        self._anchors = anchors
        self.verifier.set_bundles(material.bundles)
        for context in list(self._contexts):
            if added and anchors:
                context.load_verify_locations(cadata=anchors)  # duplicates are ignored
            _load_identity(context, material)


def server_context(
    source: IdentitySource, *, peer_required: bool = True, **options: Any
) -> ssl.SSLContext:
    """A server context over ``source`` (``options``: those of :class:`SpiffeTls`)."""
    return SpiffeTls(source, **options).server_context(peer_required=peer_required)


def client_context(
    source: IdentitySource, *, expect: PeerRule | None = None, **options: Any
) -> ssl.SSLContext:
    """A client context over ``source`` (``options``: those of :class:`SpiffeTls`)."""
    return SpiffeTls(source, **options).client_context(expect=expect)


def pinned_client_context(
    bundles: BundleSet, *, expect: PeerRule, clock: Clock | None = None
) -> ssl.SSLContext:
    """A client context over fixed ``bundles`` that accepts only a server satisfying ``expect``, with no SVID yet.

    For clients that are not workloads with an identity source: the issuer's own client (whose SVID, when it has
    one, the caller loads with :func:`load_identity`) and its federation poller (which presents none). The server
    is checked inside the handshake exactly as :class:`SpiffeTls` checks it (step 2 of the module docstring).
    """
    context = spiffe_context(_SpiffeContext(ssl.PROTOCOL_TLS_CLIENT), bundles.union_pem())
    context.sigil_verifier = SvidVerifier(bundles, clock=clock)
    context.sigil_expect = expect
    context.sigil_peer_required = True
    context.sigil_on_refused = None
    return context


def _load_identity(context: ssl.SSLContext, material: X509Material) -> None:
    load_identity(context, material.chain_pem(), material.key_pem(), who=str(material.spiffe_id))


def _matches(rule: PeerRule, spiffe_id: SpiffeId) -> bool:
    if isinstance(rule, SpiffeId):
        return spiffe_id == rule
    if isinstance(rule, TrustDomain):
        return spiffe_id.trust_domain == rule
    return bool(rule(spiffe_id))


def _describe(rule: PeerRule) -> str:
    if isinstance(rule, SpiffeId):
        return str(rule)
    if isinstance(rule, TrustDomain):
        return f"an ID of trust domain {rule}"
    return "an ID the client accepts"
