"""The proxy's listeners: mTLS for a workload that speaks plain TCP, with SPIFFE verification and policy.

Inbound, the proxy terminates mTLS on the pod's public port with a context from :mod:`sigil.enforcer.tls` (the
peer's SVID is verified inside the handshake, so an unverified peer never reaches a decision), asks the
:class:`~sigil.enforcer.authorizer.Authorizer` about the verified SPIFFE ID, and either forwards the connection
to the application's local port or closes it. Outbound, it accepts plain TCP from the application on a local
port and originates mTLS to an upstream with the workload's SVID, accepting the server only if its SVID
verifies and matches the expected ID or trust domain; with no expectation given, the expected trust domain is
the workload's own, so a federated partner's valid SVID is never accepted unless asked for by name.

Everything runs on asyncio streams; each connection is a task the proxy owns. On shutdown the proxy stops
listening, lets open connections finish for ``drain_seconds``, then cancels and awaits the rest (uvicorn's
graceful-then-forced shutdown).
"""

from __future__ import annotations

import asyncio
import socket
import ssl

import structlog

from sigil.enforcer.authorizer import Authorizer
from sigil.enforcer.metrics import EnforcerMetrics
from sigil.enforcer.proxy.connections import ProxyListener, refusal_reporter
from sigil.enforcer.proxy.probes import TLS_HANDSHAKE, answer_probe, first_byte, judge_probe
from sigil.enforcer.proxy.settings import Address
from sigil.enforcer.proxy.streams import splice
from sigil.enforcer.tls import PeerRule, SpiffeTls, peer_of

__all__ = ["InboundProxy", "OutboundProxy", "refusal_reporter"]

_log = structlog.get_logger(__name__)


class InboundProxy(ProxyListener):
    """Terminates mTLS on ``listen``, decides, forwards allowed connections to ``forward`` in plain TCP.

    With ``probe_paths`` the listener also takes plaintext, and passes exactly one ``GET`` of one of those paths
    to the application (a kubelet probe, :mod:`sigil.enforcer.proxy.probes`); any other plaintext is refused.
    """

    direction = "inbound"

    def __init__(
        self,
        listen: Address,
        forward: Address,
        *,
        tls: SpiffeTls,
        authorizer: Authorizer,
        policy_port: int | None = None,
        probe_paths: frozenset[str] = frozenset(),
        metrics: EnforcerMetrics | None = None,
        drain_seconds: float = 10.0,
        connect_seconds: float = 10.0,
    ) -> None:
        super().__init__(
            listen, metrics=metrics, drain_seconds=drain_seconds, connect_seconds=connect_seconds
        )
        self.forward = forward
        self.probe_paths = probe_paths
        self._context = tls.server_context()
        self._authorizer = authorizer
        self._policy_port = policy_port
        self._socket: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None

    def _listen_context(self) -> ssl.SSLContext:
        return self._context

    async def start(self) -> None:
        """Start listening; with probe paths, on a socket whose connections are sniffed before TLS."""
        if not self.probe_paths:
            await super().start()
            return
        family = socket.AF_INET6 if ":" in self.listen.host else socket.AF_INET
        sock = socket.create_server((self.listen.host, self.listen.port), family=family)
        sock.setblocking(False)
        self._socket = sock
        self._port = sock.getsockname()[1]
        self._accepting = asyncio.create_task(self._accept_all(sock), name="sigil-proxy-accept")
        _log.info(
            "proxy listening",
            direction=self.direction,
            address=str(self.listen),
            port=self.port,
            probe_paths=sorted(self.probe_paths),
        )

    async def _stop_listening(self) -> bool:
        if self._socket is None:
            return await super()._stop_listening()
        sock, self._socket = self._socket, None
        if self._accepting is not None:
            self._accepting.cancel()
            await asyncio.gather(self._accepting, return_exceptions=True)
        sock.close()
        return True

    async def _accept_all(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(sock)
            except OSError as err:
                # Out of file descriptors, say: keep listening rather than end the proxy's only way in.
                _log.error("proxy accept failed", error=str(err))
                await asyncio.sleep(0.1)
                continue
            conn.setblocking(False)
            task = asyncio.create_task(self._sniff(conn))
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)

    async def _sniff(self, conn: socket.socket) -> None:
        """TLS (its first byte is a handshake record) goes the usual way; anything else may be a probe."""
        loop = asyncio.get_running_loop()
        try:
            first = await asyncio.wait_for(first_byte(conn), self._connect_seconds)
        except (OSError, TimeoutError):
            first = None
        if first is None:
            conn.close()
            return
        tls = first == TLS_HANDSHAKE
        reader = asyncio.StreamReader()
        protocol = asyncio.StreamReaderProtocol(reader)
        try:
            transport, _ = await loop.connect_accepted_socket(
                lambda: protocol,
                conn,
                ssl=self._context if tls else None,
                ssl_handshake_timeout=self._connect_seconds if tls else None,
            )
        except (OSError, TimeoutError):  # ssl.SSLError is an OSError; the refusal hook reported it
            conn.close()
            return
        await self._accept(reader, asyncio.StreamWriter(transport, protocol, reader, loop))

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tls = writer.get_extra_info("ssl_object")
        address = _peer_address(writer)
        if tls is None:
            head = await judge_probe(
                reader,
                self.probe_paths,
                address,
                metrics=self._metrics,
                within=self._connect_seconds,
            )
            upstream = None if head is None else await self._connect_forward()
            if head is not None and upstream is not None:
                await answer_probe(head, writer, upstream)
            return
        verified = peer_of(tls)
        peer = None if verified is None else verified.spiffe_id
        port = self._policy_port if self._policy_port is not None else self.port
        if not self._authorizer.decide(peer, port, address=address).allowed:
            return
        upstream = await self._connect_forward()
        if upstream is not None:
            await splice((reader, writer), upstream)

    async def _connect_forward(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """A plain connection to the application's port, or None (logged) when it does not answer."""
        try:
            return await asyncio.wait_for(
                asyncio.open_connection(self.forward.host, self.forward.port),
                self._connect_seconds,
            )
        except (OSError, TimeoutError) as err:
            _log.error("local port unreachable", forward=str(self.forward), error=str(err))
            return None


def _peer_address(writer: asyncio.StreamWriter) -> str | None:
    peername = writer.get_extra_info("peername")
    if isinstance(peername, tuple) and peername and isinstance(peername[0], str):
        return peername[0]
    return None


class OutboundProxy(ProxyListener):
    """Accepts plain TCP on ``listen`` and originates mTLS to ``upstream`` as the workload's SVID.

    ``expect`` says which server to accept; None means any ID of the workload's own trust domain (that of the
    SVID ``tls`` presents), never a federated domain's.
    """

    direction = "outbound"

    def __init__(
        self,
        listen: Address,
        upstream: Address,
        *,
        tls: SpiffeTls,
        expect: PeerRule | None = None,
        metrics: EnforcerMetrics | None = None,
        drain_seconds: float = 10.0,
        connect_seconds: float = 10.0,
    ) -> None:
        super().__init__(
            listen, metrics=metrics, drain_seconds=drain_seconds, connect_seconds=connect_seconds
        )
        self.upstream = upstream
        # Every bundle the workload holds would vouch for a server, federated partners' included: without an
        # explicit expectation, only the local trust domain's servers are the ones the application meant.
        self.expect: PeerRule = expect if expect is not None else tls.spiffe_id.trust_domain
        self._context = tls.client_context(expect=self.expect)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream = await asyncio.wait_for(
                asyncio.open_connection(
                    self.upstream.host,
                    self.upstream.port,
                    ssl=self._context,
                    server_hostname=self.upstream.host,
                ),
                self._connect_seconds,
            )
        except ssl.SSLCertVerificationError as err:
            # The SPIFFE refusal itself was logged and counted by the context's on_refused hook.
            _log.warning("upstream refused", upstream=str(self.upstream), error=str(err))
            return
        except (OSError, TimeoutError) as err:
            _log.error("upstream unreachable", upstream=str(self.upstream), error=str(err))
            return
        verified = peer_of(upstream[1].get_extra_info("ssl_object"))
        _log.info(
            "upstream connected",
            upstream=str(self.upstream),
            peer=None if verified is None else str(verified.spiffe_id),
        )
        await splice((reader, writer), upstream)
