"""PostgreSQL serving TLS from the files ``sigil-agent api watch`` keeps, across a rotation, with real agent and issuer.

The classic reader of certificate files: PostgreSQL with ``ssl = on`` takes its certificate and key from the watched
directory, verifies client certificates against ``bundle.pem``, and reloads all three on SIGHUP, which the watch
sends to the PID at the head of ``postmaster.pid``.

PostgreSQL refuses to run as root and reads only a key its own account owns. When the suite runs as root, the server
runs as its account (as ``sigil_testing.postgres`` does) while the watch stays root, the common sidecar arrangement,
and uses ``--exec`` to hand the files to that account and send the SIGHUP itself; otherwise the watch signals the
server directly with ``--signal HUP --pid-file``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import socket
import ssl
import struct
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from cryptography import x509
from sigil_testing.local_agent import local_agent, uid_id
from sigil_testing.network import free_port
from sigil_testing.postgres import PostgresUnavailableError, server_account, server_bin_dir
from sigil_testing.waiting import eventually

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

# SSLRequest: length 8, then the code 1234 5679 (PostgreSQL protocol, "SSL Session Encryption").
_SSL_REQUEST = struct.pack("!ii", 8, 80877103)


def _run(argv: list[str], account: pwd.struct_passwd | None) -> None:
    subprocess.run(  # noqa: S603 - fixed binaries, our paths
        argv,
        check=True,
        capture_output=True,
        user=None if account is None else account.pw_uid,
        group=None if account is None else account.pw_gid,
    )


def _client_context(certs: Path) -> ssl.SSLContext:
    """TLS as a client holding an SVID of the same trust domain: the server's chain checked against the bundle."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False  # an X509-SVID names a SPIFFE ID, not a host
    context.load_verify_locations(cafile=str(certs / "bundle.pem"))
    context.load_cert_chain(str(certs / "svid.pem"), str(certs / "svid.key"))
    return context


def _server_certificate(port: int, certs: Path) -> x509.Certificate:
    """The certificate PostgreSQL presents on a new TLS connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(_SSL_REQUEST)
        assert raw.recv(1) == b"S", "PostgreSQL declined TLS"
        with _client_context(certs).wrap_socket(raw) as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


@contextlib.contextmanager
def _postgres(root: Path, certs: Path, account: pwd.struct_passwd | None) -> Iterator[int]:
    """A PostgreSQL server on a free port taking TLS from ``certs`` and requiring a verified client certificate."""
    bin_dir, data, port = server_bin_dir(), root / "data", free_port()
    _run([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"], account)
    with (data / "postgresql.conf").open("a") as conf:
        conf.write(
            f"ssl = on\nssl_cert_file = '{certs}/svid.pem'\nssl_key_file = '{certs}/svid.key'\n"
            f"ssl_ca_file = '{certs}/bundle.pem'\nlisten_addresses = '127.0.0.1'\nport = {port}\n"
            f"unix_socket_directories = '{root}'\n"
        )
    (data / "pg_hba.conf").write_text(
        "local all all trust\nhostssl all all 127.0.0.1/32 trust clientcert=verify-ca\n"
    )
    pg_ctl = str(bin_dir / "pg_ctl")
    log = root / "server.log"
    try:
        _run([pg_ctl, "-D", str(data), "-l", str(log), "-w", "start"], account)
    except subprocess.CalledProcessError as err:
        raise PostgresUnavailableError(log.read_text(errors="replace")[-2000:]) from err
    try:
        yield port
    finally:
        _run([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"], account)


def _notify_options(certs: Path, pid_file: Path, account: pwd.struct_passwd | None) -> list[str]:
    if account is None:
        return ["--signal", "HUP", "--pid-file", str(pid_file)]
    files = " ".join(f"{certs}/{name}" for name in ("svid.pem", "svid.key", "bundle.pem"))
    script = f"chown {account.pw_uid}:{account.pw_gid} {files} && kill -HUP $(head -n 1 {pid_file})"
    return ["--exec", "sh", "-c", script]


@contextlib.asynccontextmanager
async def _watch(
    endpoint: Path, certs: Path, pid_file: Path, account: pwd.struct_passwd | None
) -> AsyncIterator[asyncio.subprocess.Process]:
    """The real ``sigil-agent api watch`` process (as this process's user), stopped with SIGTERM."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "sigil.node_agent.cli", "api", "watch", "--socket", str(endpoint)),
        *("--write", str(certs), *_notify_options(certs, pid_file, account)),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        process.terminate()
        assert await asyncio.wait_for(process.wait(), 10) == 0


async def _select_over_tls(connection: asyncpg.Connection) -> bool:
    return bool(
        await connection.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    )


async def test_postgres_keeps_serving_tls_across_a_rotation(short_tmp: Path) -> None:
    """PostgreSQL serves the watched SVID, takes the rotated one on the watch's SIGHUP, and never stops serving."""
    try:
        account = server_account()
        server_bin_dir()
    except PostgresUnavailableError as err:
        pytest.skip(str(err))
    uid = os.getuid()
    root, certs = short_tmp / "pg", short_tmp / "certs"
    os.mkdir(root)
    os.mkdir(certs)
    if account is not None:
        # The server's account reaches its files and owns its data directory.
        os.chmod(short_tmp, 0o755)  # noqa: S103 - the server account must reach its files
        os.chmod(certs, 0o755)  # noqa: S103 - only certificates are readable; the key stays 0600
        os.chown(root, account.pw_uid, account.pw_gid)
    pid_file = root / "data" / "postmaster.pid"
    async with (
        local_agent(short_tmp, {uid_id(uid): [f"unix:uid:{uid}"]}) as local,
        _watch(local.agent.settings.socket_path, certs, pid_file, account),
    ):
        await eventually(lambda: (certs / "svid.pem").exists(), what="svid.pem", within=30)
        with _postgres(root, certs, account) as port:
            first = await asyncio.to_thread(_server_certificate, port, certs)
            san = first.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == [
                str(uid_id(uid))
            ]
            connection = await asyncpg.connect(
                host="127.0.0.1",
                port=port,
                user="postgres",
                database="postgres",
                ssl=_client_context(certs),
            )
            try:
                assert await _select_over_tls(connection)

                await local.force_rotation()

                async def rotated() -> x509.Certificate | None:
                    try:
                        now = await asyncio.to_thread(_server_certificate, port, certs)
                    except ssl.SSLError as err:
                        # This poll reads the files while the watch replaces them (a server reloads on the
                        # watch's signal instead), so it can pair the new key with the old chain: read again.
                        if "KEY_VALUES_MISMATCH" not in str(err):
                            raise
                        return None
                    return now if now.serial_number != first.serial_number else None

                second = await eventually(rotated, what="PostgreSQL's new certificate")
                on_disk = x509.load_pem_x509_certificates((certs / "svid.pem").read_bytes())
                assert second.serial_number == on_disk[0].serial_number
                # The connection opened before the rotation is still served.
                assert await _select_over_tls(connection)
            finally:
                await connection.close()
            fresh = await asyncpg.connect(
                host="127.0.0.1",
                port=port,
                user="postgres",
                database="postgres",
                ssl=_client_context(certs),
            )
            try:
                assert await _select_over_tls(fresh)
            finally:
                await fresh.close()
