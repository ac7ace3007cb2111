"""Disk drill: the real ``sigil-server run`` with its data directory on a small tmpfs that fills up, then drains.

The data directory (the SQLite datastore and the authority key files) is a tmpfs of a few megabytes mounted for
the test (root only: ``mount -t tmpfs``); a filler file takes every free byte. While the disk is full, agents' batches
are refused with 503 ``datastore_unavailable`` and an operator's ``authority prepare`` with an error naming the key
file and the disk's complaint, never a bare 500; no key file is ever torn and no key of a live authority is lost.
When the filler is removed, the same server issues and rotates again without a restart.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sigil_testing.crash_checks import check_after_restart
from sigil_testing.crash_load import BATCH, SELECTOR, WORKLOAD_ID, Issued
from sigil_testing.drill_figures import record_figures
from sigil_testing.server_process import TRUST_DOMAIN, ServerProcess

from sigil.ca.bundle import TrustBundle
from sigil.ca.keys import generate_key
from sigil.issuer.admin import SocketAdmin
from sigil.issuer.client import IssuerClient, X509SvidRequest, make_csr
from sigil.issuer.errors import IssuerError

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.geteuid() != 0, reason="mounting a tmpfs for the data directory needs root"
    ),
]


@contextlib.contextmanager
def _tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True)
    done = subprocess.run(  # noqa: S603 - fixed arguments and our own path
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],  # noqa: S607
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)  # noqa: S603, S607


def _fill(directory: Path) -> Path:
    """Take every free byte of the file system under ``directory`` with one file; returns it."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        # Unbuffered writes, big then small, until not one more byte fits.
        for size in (1 << 20, 4096, 1):
            chunk = b"\0" * size
            while True:
                try:
                    os.write(fd, chunk)
                except OSError as err:
                    if err.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    return filler


async def _batch(client: IssuerClient, csr: bytes, issued: Issued, holder: str) -> list[str]:
    """One batch; returns the refusal reason of each item that was refused."""
    results = await client.batch_x509_svids([X509SvidRequest(csr, selectors=(SELECTOR,))] * BATCH)
    for result in results:
        issued.x509.extend((holder, svid) for svid in result.svids)
    return [r.error.reason for r in results if r.error is not None]


async def test_a_full_disk_refuses_clearly_tears_no_key_and_recovers(
    tmp_path: Path, short_tmp: Path
) -> None:
    """Full disk: batches 503, prepare refused naming the key file, live keys intact; space back: all works again."""
    with _tmpfs(tmp_path / "disk", "16m") as disk:
        # The config and the log live beside, not on the small disk: only the data directory is on it.
        server = ServerProcess(tmp_path / "server", short_tmp, data_root=disk / "data")
        issued = Issued()
        await server.start()
        try:
            async with SocketAdmin(server.admin_socket) as admin:
                token = await admin.generate_token(600)
                await admin.create_entry(str(WORKLOAD_ID), token["agent_id"], [SELECTOR], [])
                bundle = TrustBundle.parse_jwks(TRUST_DOMAIN, await admin.bundle("spiffe"))
                prepared = await admin.authority_step("prepare", "x509", None)
            holder, csr = str(token["agent_id"]), make_csr(generate_key())
            async with IssuerClient(server.url, bundle=bundle, timeout=10) as client:
                await client.attest_join_token(token["token"])
                assert await _batch(client, csr, issued, holder) == []
                filler = _fill(disk)
                refusals = [
                    r for _ in range(5) for r in await _refused(client, csr, issued, holder)
                ]
                async with SocketAdmin(server.admin_socket) as admin:
                    # Preparing again revokes the prepared authority and writes a new key, which fails: the
                    # revocation rolls back, and the prepared authority must still have its key.
                    with pytest.raises(IssuerError) as refused:
                        await admin.authority_step("prepare", "x509", None)
                    found = await check_after_restart(server, issued)
                assert server.exited() is None, server.log_tail()
                filler.unlink()
                assert await _batch(client, csr, issued, holder) == []
                async with SocketAdmin(server.admin_socket) as admin:
                    await admin.authority_step(
                        "activate", "x509", prepared["authority"]["authority_id"]
                    )
                    await admin.authority_step("prepare", "jwt", None)
            after = await check_after_restart(server, issued)
        finally:
            await server.stop()
    assert set(refusals) == {"datastore_unavailable"}, refusals
    assert (refused.value.reason, refused.value.status) == ("key_store_unavailable", 503)
    assert "No space left on device" in refused.value.detail, refused.value.detail
    assert not found.problems, found.problems
    assert not after.problems, after.problems
    record_figures("disk_full", full_disk_refusals=len(refusals), recovered=True)


async def _refused(client: IssuerClient, csr: bytes, issued: Issued, holder: str) -> list[str]:
    try:
        return await _batch(client, csr, issued, holder)
    except IssuerError as err:
        return [err.reason]
