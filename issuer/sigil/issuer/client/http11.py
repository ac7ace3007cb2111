"""HTTP/1.1 for the issuer's client: h11's state machine over asyncio streams and ``ssl``, with kept-alive connections.

The node agent runs on every node, and its client makes a handful of JSON requests to one server. aiohttp's client
did that job for about 12 MB of the agent's resident memory (its parser, yarl, multidict, the connector); h11
(https://h11.readthedocs.io) is the HTTP/1.1 protocol alone, and the bytes move over :func:`asyncio.open_connection`.
What is kept of aiohttp's client:

- keep-alive: a connection that ended its exchange cleanly waits, idle, for the next request made with the same TLS
  context, and is closed after :data:`_IDLE_SECONDS` (aiohttp's ``keepalive_timeout``, shorter than aiohttp's
  server's 75 s, so the client lets go first); a connection the server has closed meanwhile is not reused;
- at most :data:`_LIMIT` connections at once per pool (aiohttp's connector ``limit``); more requests wait;
- a request that fails on its connection is not retried on another: it may have reached the server, and some
  requests do something once (a join token is spent by its first use).

Failures are the standard library's, so callers catch them as they catch any network failure: ``OSError``
(``ConnectionRefusedError``, ``ConnectionResetError`` when the server closes without answering, ``ssl.SSLError``
for TLS, :class:`UnexpectedAnswerError` for an answer that is not the issuer's) and ``TimeoutError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import h11

__all__ = ["ConnectionPool", "Reply", "UnexpectedAnswerError"]

#: Seconds an idle connection is kept for reuse (aiohttp's client ``keepalive_timeout``).
_IDLE_SECONDS = 15.0
#: Connections open at once per pool (aiohttp's ``TCPConnector`` default ``limit``).
_LIMIT = 100
#: Seconds :meth:`ConnectionPool.aclose` waits for TLS close_notify exchanges before dropping the sockets.
_CLOSE_SECONDS = 5.0
_READ_SIZE = 65536


class UnexpectedAnswerError(OSError):
    """The server answered, but not as an issuer does: an error status without a problem, not JSON, broken HTTP.

    An ``OSError``, as :class:`urllib.error.HTTPError` is: to the caller it is one more way for the issuer to be
    unreachable (something in front of it may be answering). ``status`` is the HTTP status, None when the answer
    was not HTTP/1.1 at all.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Reply:
    """One complete answer: status, headers (lower-cased names) and body."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @property
    def content_type(self) -> str:
        """The media type of the body, without parameters (``application/json``), as aiohttp's is."""
        for name, value in self.headers:
            if name == "content-type":
                return value.partition(";")[0].strip().lower()
        return "application/octet-stream"

    async def json(self, *, content_type: str | None = "application/json") -> Any:
        """The body as JSON; with ``content_type`` (the default), only when the body is declared as that type."""
        if content_type is not None and self.content_type != content_type:
            raise UnexpectedAnswerError(
                f"HTTP {self.status} with {self.content_type}, not {content_type}",
                status=self.status,
            )
        try:
            return json.loads(self.body)
        except ValueError as err:
            raise UnexpectedAnswerError(
                f"HTTP {self.status} with a body that is not JSON", status=self.status
            ) from err

    def raise_for_status(self) -> None:
        """Raise :class:`UnexpectedAnswerError` for a status of 400 or more."""
        if self.status >= 400:
            raise UnexpectedAnswerError(f"HTTP {self.status}", status=self.status)


class _Connection:
    """One HTTP/1.1 connection: one exchange at a time, and whether it may carry another."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        context: ssl.SSLContext | None,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._h11 = h11.Connection(h11.CLIENT)
        self.context = context
        self.idle_timer: asyncio.TimerHandle | None = None

    @property
    def ssl_object(self) -> ssl.SSLObject | None:
        found: ssl.SSLObject | None = self._writer.get_extra_info("ssl_object")
        return found

    @property
    def usable(self) -> bool:
        """True when the connection is idle and neither side has started to close it."""
        return (
            self._h11.our_state is h11.IDLE
            and self._h11.their_state is h11.IDLE
            and not self._reader.at_eof()
            and not self._writer.transport.is_closing()
        )

    async def exchange(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes
    ) -> Reply:
        try:
            self._writer.write(
                self._h11.send(h11.Request(method=method, target=target, headers=headers))
            )
            if body:
                self._writer.write(self._h11.send(h11.Data(data=body)))
            self._writer.write(self._h11.send(h11.EndOfMessage()))
            await self._writer.drain()
            return await self._read_reply()
        except h11.ProtocolError as err:
            raise UnexpectedAnswerError(f"broken HTTP/1.1: {err}") from err

    async def _read_reply(self) -> Reply:
        event = await self._next_event()
        while not isinstance(event, h11.Response):  # skip 1xx answers: they carry nothing for us
            event = await self._next_event()
        response, chunks = event, []
        event = await self._next_event()
        while isinstance(event, h11.Data):
            chunks.append(bytes(event.data))
            event = await self._next_event()
        if self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE:
            self._h11.start_next_cycle()
        headers = tuple(
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in response.headers
        )
        return Reply(response.status_code, headers, b"".join(chunks))

    async def _next_event(self) -> h11.Event:
        """The next event, reading as needed; the server closing early is ``ConnectionResetError``."""
        while True:
            event = self._h11.next_event()
            if event is h11.NEED_DATA:
                data = await self._reader.read(_READ_SIZE)
                if not data and self._h11.their_state is h11.SEND_RESPONSE:
                    # Closed before any answer; as http.client's RemoteDisconnected, a ConnectionResetError. (A
                    # close in the middle of a body is h11's RemoteProtocolError: an UnexpectedAnswerError.)
                    raise ConnectionResetError("the server closed the connection without answering")
                self._h11.receive_data(data)
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionResetError("the server closed the connection without answering")
            elif isinstance(event, h11.Event):
                return event
            else:  # PAUSED comes only after the answer's EndOfMessage, where reading stops
                raise UnexpectedAnswerError("the server's answer went on past its end")

    def abort(self) -> None:
        self.cancel_idle_timer()
        self._writer.transport.abort()

    def close(self) -> None:
        self.cancel_idle_timer()
        self._writer.close()

    async def wait_closed(self) -> None:
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()

    def cancel_idle_timer(self) -> None:
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None


class ConnectionPool:
    """Requests to one ``http(s)://host:port[/prefix]`` URL over kept-alive connections; ``aclose`` ends them all."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r} is not an http(s)://host[:port] URL")
        self._tls = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._tls else 80)
        host = f"[{self._host}]" if ":" in self._host else self._host
        self._authority = host if parts.port is None else f"{host}:{parts.port}"  # no userinfo
        self._prefix = parts.path.rstrip("/")
        self._idle: list[_Connection] = []
        self._open: set[_Connection] = set()
        self._limit = asyncio.Semaphore(_LIMIT)

    async def request(
        self,
        method: str,
        target: str,
        *,
        body: bytes = b"",
        context: ssl.SSLContext | None,
    ) -> tuple[Reply, ssl.SSLObject | None]:
        """Send one request for ``target`` (path and query) and read the whole answer (the caller bounds the time).

        Returns the answer and the TLS session it came over (None for plain HTTP). ``context`` is used for a new
        connection and picks which idle one may be reused: one made with exactly this context.
        """
        if not self._tls:
            context = None
        headers = [("Host", self._authority), ("Accept", "application/json")]
        if body or method in ("POST", "PUT"):
            headers += [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        async with self._limit:
            connection = self._reusable(context) or await self._connect(context)
            try:
                reply = await connection.exchange(method, self._prefix + target, headers, body)
            except BaseException:
                self._drop(connection)
                raise
            ssl_object = connection.ssl_object
            if connection.usable:
                self._keep(connection)
            else:
                self._open.discard(connection)
                connection.close()
            return reply, ssl_object

    async def aclose(self) -> None:
        """Close every connection, idle or busy; wait (briefly) for their TLS sessions to end."""
        closing = list(self._open)
        self._idle.clear()
        self._open.clear()
        for connection in closing:
            connection.close()
        try:
            async with asyncio.timeout(_CLOSE_SECONDS):
                await asyncio.gather(*(c.wait_closed() for c in closing))
        except TimeoutError:
            for connection in closing:
                connection.abort()

    def _reusable(self, context: ssl.SSLContext | None) -> _Connection | None:
        while self._idle:
            connection = self._idle.pop()
            if connection.context is context and connection.usable:
                connection.cancel_idle_timer()
                return connection
            # Made with another context (before the agent SVID rotated, or anonymous) or closed by the server.
            self._open.discard(connection)
            connection.close()
        return None

    async def _connect(self, context: ssl.SSLContext | None) -> _Connection:
        if self._tls and context is None:
            raise ValueError("an https URL needs a TLS context")
        reader, writer = await asyncio.open_connection(
            self._host, self._port, ssl=context, server_hostname=self._server_name(context)
        )
        connection = _Connection(reader, writer, context)
        self._open.add(connection)
        return connection

    def _server_name(self, context: ssl.SSLContext | None) -> str | None:
        """The SNI name: the host, unless it is an IP address (RFC 6066 section 3 allows no literal addresses).

        Passing an address anyway would send no SNI either, but ``ssl`` would load the IDNA codec (and with it
        ``unicodedata``) to encode it. The SPIFFE contexts check no host name, so none is needed for that.
        """
        if context is None:
            return None
        try:
            ipaddress.ip_address(self._host)
        except ValueError:
            return self._host
        return None

    def _keep(self, connection: _Connection) -> None:
        loop = asyncio.get_running_loop()
        connection.idle_timer = loop.call_later(_IDLE_SECONDS, self._expire, connection)
        self._idle.append(connection)

    def _expire(self, connection: _Connection) -> None:
        if connection in self._idle:
            self._idle.remove(connection)
            self._open.discard(connection)
            connection.close()

    def _drop(self, connection: _Connection) -> None:
        self._open.discard(connection)
        connection.abort()
