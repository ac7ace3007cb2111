"""A throwaway PostgreSQL server for the test session, and a fresh database per test on it.

The suite starts its own server with Debian's ``initdb`` and ``pg_ctl`` in a temporary directory, on a free loopback
port, and stops it at the end of the session; ``SIGIL_TEST_POSTGRES`` (an admin DSN such as
``postgresql://postgres@127.0.0.1:5432/postgres``) points the suite at an existing server instead.

PostgreSQL refuses to run as root, and CI runs as root: the server then runs as the ``postgres`` account that Debian's
package creates (or ``nobody``), which owns the temporary directory.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg

from sigil_testing.network import free_port

__all__ = [
    "ADMIN_ENV",
    "PostgresUnavailableError",
    "running_postgres",
    "server_account",
    "server_bin_dir",
    "temporary_database",
]

ADMIN_ENV = "SIGIL_TEST_POSTGRES"
_INSTALL_HINT = "install the server binaries with: apt-get install -y postgresql"


class PostgresUnavailableError(RuntimeError):
    """No PostgreSQL server binaries, or the throwaway server did not start."""


def server_bin_dir() -> Path:
    """The newest server installation: Debian keeps each major version under /usr/lib/postgresql/N/bin."""
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if versions:
        return versions[-1].parent
    on_path = shutil.which("initdb")
    if on_path is not None:
        return Path(on_path).resolve().parent
    raise PostgresUnavailableError(
        f"no PostgreSQL server (initdb) on this machine; {_INSTALL_HINT}"
    )


def server_account() -> pwd.struct_passwd | None:
    """The account the server runs as: ourselves unless we are root, which PostgreSQL refuses."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise PostgresUnavailableError(
        "running as root with neither a 'postgres' nor a 'nobody' account"
    )


def _run(argv: list[str], account: pwd.struct_passwd | None) -> None:
    result = subprocess.run(  # noqa: S603 - argv is built here from fixed binaries and our own paths
        argv,
        capture_output=True,
        text=True,
        check=False,
        user=None if account is None else account.pw_uid,
        group=None if account is None else account.pw_gid,
        env={**os.environ, "LC_ALL": "C.UTF-8"},
    )
    if result.returncode != 0:
        raise PostgresUnavailableError(
            f"{Path(argv[0]).name} failed ({result.returncode}): {result.stdout}{result.stderr}"
        )


@contextlib.contextmanager
def running_postgres() -> Iterator[str]:
    """Start a throwaway server (or use ``SIGIL_TEST_POSTGRES``) and yield its admin DSN."""
    existing = os.environ.get(ADMIN_ENV)
    if existing:
        yield existing
        return
    bin_dir = server_bin_dir()
    account = server_account()
    root = Path(tempfile.mkdtemp(prefix="sigil-pg-"))
    data, sockets = root / "data", root / "run"
    sockets.mkdir()
    if account is not None:
        for path in (root, sockets):
            os.chown(path, account.pw_uid, account.pw_gid)
    port = free_port()
    # A test server: durability off (fsync, full-page writes) and enough connections for four replicas at once.
    options = (
        f"-h 127.0.0.1 -p {port} -k {sockets} -F -c full_page_writes=off -c max_connections=200"
        " -c shared_buffers=64MB"
    )
    try:
        _run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
            ],
            account,
        )
        pg_ctl = str(bin_dir / "pg_ctl")
        server_log = str(root / "server.log")
        _run(
            [pg_ctl, "-D", str(data), "-l", server_log, "-o", options, "-w", "-t", "60", "start"],
            account,
        )
    except PostgresUnavailableError as err:
        log = root / "server.log"
        detail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        raise PostgresUnavailableError(f"{err}\n{detail}") from err
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        with contextlib.suppress(PostgresUnavailableError):
            _run(
                [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], account
            )
        shutil.rmtree(root, ignore_errors=True)


@asynccontextmanager
async def temporary_database(admin_dsn: str) -> AsyncIterator[str]:
    """Create a fresh database on the server at ``admin_dsn``, yield its SQLAlchemy URL, and drop it afterwards."""
    name = f"sigil_test_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = admin_dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        admin = await asyncpg.connect(admin_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
