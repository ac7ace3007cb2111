"""Traffic for the rotation drill: a TLS server workload and a client workload, each holding its own SVID.

The server is the enforcer's :class:`~sigil.enforcer.tls.SpiffeTls` over a
:class:`~sigil.enforcer.sources.WorkloadApiSource` (in this process, attested by its gid), and checks each request's
JWT-SVID with the agent's ``ValidateJWTSVID``. The client is a separate process (its own gid, so its own identity)
written the way a py-spiffe user writes one: ``X509Source`` for the SVID and bundle, a fresh ``ssl`` context per
connection from whatever the source holds now, a JWT-SVID from ``fetch_jwt_svid`` in every request, and the
server's SPIFFE ID checked on the certificate it presented. It prints one line per request; :class:`Traffic`
counts them against the step the operator is on.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import sys
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from spiffe import WorkloadApiClient
from spiffe.errors import PySpiffeError

from sigil.ca.spiffe_id import SpiffeId
from sigil.enforcer.tls import SpiffeTls, peer_of
from sigil.enforcer.workload_source import WorkloadApiSource

__all__ = ["AUDIENCE", "CLIENT_GID", "StepCount", "Traffic", "drill_server", "traffic"]

AUDIENCE = "drill"
#: The client process runs with this gid, which its registration entry selects (the server keeps the test's).
CLIENT_GID = 4242

_CLIENT = r"""
import os, socket, ssl, sys, tempfile, time
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from spiffe import WorkloadApiClient, X509Source

port, interval, server_id = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
client = WorkloadApiClient()
source = X509Source(client, timeout_in_seconds=20)
scratch = tempfile.mkdtemp()
print("ready", flush=True)
while True:
    started = time.monotonic()
    try:
        svid = source.svid
        bundle = source.get_bundle_for_trust_domain(svid.spiffe_id.trust_domain)
        token = client.fetch_jwt_svid({"drill"}).token
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False  # SPIFFE names the server by URI SAN, checked below
        context.load_verify_locations(
            cadata="".join(a.public_bytes(Encoding.PEM).decode() for a in bundle.x509_authorities)
        )
        chain, key = os.path.join(scratch, "svid.pem"), os.path.join(scratch, "svid.key")
        with open(chain, "wb") as f:
            f.write(b"".join(c.public_bytes(Encoding.PEM) for c in svid.cert_chain))
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(svid.private_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
        context.load_cert_chain(chain, key)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with context.wrap_socket(raw) as tls:
                leaf = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
                uris = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                if [str(u) for u in uris.get_values_for_type(x509.UniformResourceIdentifier)] != [server_id]:
                    raise ssl.SSLError("the server is not " + server_id)
                tls.sendall(token.encode() + b"\n")
                reply = b""
                while not reply.endswith(b"\n"):
                    chunk = tls.recv(256)
                    if not chunk:
                        break
                    reply += chunk
        print("ok" if reply == b"ok\n" else "fail refused " + reply.decode().strip(), flush=True)
    except Exception as err:  # every failure is a failed request, which is what the drill counts
        print("fail", type(err).__name__, str(err).replace("\n", " ")[:200], flush=True)
    time.sleep(max(0.0, interval - (time.monotonic() - started)))
"""


@dataclass
class StepCount:
    """Requests made while one step ran, and those that failed (with the first few reasons)."""

    requests: int = 0
    failures: int = 0
    reasons: Counter[str] = field(default_factory=Counter)


class Traffic:
    """The client's requests, counted against the step named by :meth:`step`."""

    def __init__(self) -> None:
        self.steps: dict[str, StepCount] = {}
        self._current = "start"
        self.total = 0
        self._moved = asyncio.Event()

    def step(self, name: str) -> None:
        self._current = name
        self.steps.setdefault(name, StepCount())

    def record(self, line: str) -> None:
        count = self.steps.setdefault(self._current, StepCount())
        count.requests += 1
        self.total += 1
        self._moved.set()
        if line != "ok":
            count.failures += 1
            count.reasons[line[:160]] += 1

    async def pass_requests(self, n: int, *, within: float = 30.0) -> None:
        """Wait until ``n`` more requests were made (whatever their outcome)."""
        target = self.total + n
        async with asyncio.timeout(within):
            while self.total < target:
                self._moved.clear()
                await self._moved.wait()

    def failures(self) -> dict[str, int]:
        return {name: count.failures for name, count in self.steps.items()}


async def _handle(
    tls: SpiffeTls,
    checker: WorkloadApiClient,
    client_id: SpiffeId,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> None:
    try:
        token = (await reader.readline()).decode().strip()
        peer = peer_of(writer.get_extra_info("ssl_object"))
        answer = "ok"
        if peer is None or peer.spiffe_id != client_id:
            answer = f"bad peer {peer.spiffe_id if peer else None}"
        else:
            try:
                jwt = await asyncio.to_thread(checker.validate_jwt_svid, token, AUDIENCE)
            except PySpiffeError as err:  # the agent's refusal is an answer the client counts
                answer = f"bad jwt {type(err).__name__}: {err}"[:150]
            else:
                if str(jwt.spiffe_id) != str(client_id):
                    answer = f"bad jwt subject {jwt.spiffe_id}"
        writer.write(answer.encode() + b"\n")
        await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError, OSError):
            await writer.wait_closed()


@asynccontextmanager
async def drill_server(endpoint: Path, client_id: SpiffeId) -> AsyncIterator[int]:
    """The TLS server workload on 127.0.0.1; yields its port."""
    source = await WorkloadApiSource.open(f"unix://{endpoint}")
    tls = SpiffeTls(source)
    checker = WorkloadApiClient(socket_path=f"unix://{endpoint}", default_timeout=10)
    context = tls.server_context()
    server = await asyncio.start_server(
        lambda r, w: _handle(tls, checker, client_id, r, w), "127.0.0.1", 0, ssl=context
    )
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()
        tls.close()
        checker.close()
        await source.aclose()


@asynccontextmanager
async def traffic(
    endpoint: Path, port: int, server_id: SpiffeId, *, interval: float = 0.03
) -> AsyncIterator[Traffic]:
    """The client workload making a request every ``interval`` seconds until the block ends."""
    counted = Traffic()
    process = await _start_client(endpoint, port, server_id, interval)
    try:

        async def read() -> None:
            assert process.stdout is not None
            while line := await process.stdout.readline():
                counted.record(line.decode().strip())

        reader = asyncio.create_task(read())
        try:
            yield counted
        finally:
            process.terminate()
            await process.wait()
            await reader
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


_CLIENT_STARTS = 3
"""grpcio now and then kills py-spiffe's client as it starts on these loaded machines (an abort, "Check failed:
next_worker->state == KICKED" in ev_epoll1_linux.cc, even with its poll() poller asked for; once a silent
death after "skipping fork() handlers"): a client that dies before it says anything is started again, up to
this many times; one that answers something other than "ready" fails the test at once."""


async def _start_client(
    endpoint: Path, port: int, server_id: SpiffeId, interval: float
) -> asyncio.subprocess.Process:
    """The client workload's process, once it has said it is ready."""
    for attempt in range(1, _CLIENT_STARTS + 1):
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _CLIENT,
            str(port),
            str(interval),
            str(server_id),
            env={
                **os.environ,
                "SPIFFE_ENDPOINT_SOCKET": f"unix://{endpoint}",
                "GRPC_POLL_STRATEGY": "poll",
            },
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            group=CLIENT_GID,
            extra_groups=[],
        )
        assert process.stdout is not None
        assert process.stderr is not None
        try:
            first = await asyncio.wait_for(process.stdout.readline(), 30)
        except BaseException:
            process.kill()
            await process.wait()
            raise
        if first == b"ready\n":
            return process
        code = await process.wait()
        errors = (await process.stderr.read()).decode()
        # A client that printed something else than "ready" failed on its own terms: that fails the test.
        if first or attempt == _CLIENT_STARTS:
            raise AssertionError(f"the client did not start ({first!r}, exit {code}): {errors}")
    raise AssertionError("unreachable")
