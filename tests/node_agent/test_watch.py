"""``sigil-agent api watch`` keeps the files current and tells the program that reads them, as spiffe-helper does."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sigil_testing.pki import Domain
from sigil_testing.waiting import eventually

from sigil.node_agent.cli import main
from sigil.node_agent.memory_source import InMemoryIdentitySource
from sigil.node_agent.watch import WatchRequest, parse_signal, watch
from sigil.node_agent.workload_api.endpoint import WorkloadApiServer

from .conftest import FEDERATED, WORKLOAD_ID, my_uid, workload_svid


def _serial(path: Path) -> int | None:
    try:
        return x509.load_pem_x509_certificates(path.read_bytes())[0].serial_number
    except (FileNotFoundError, ValueError):
        return None


@contextlib.asynccontextmanager
async def _watching(request: WatchRequest) -> AsyncIterator[asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(watch(request, stop=stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_the_files_are_written_and_follow_a_rotation(
    server: WorkloadApiServer,
    source: InMemoryIdentitySource,
    ca: Domain,
    partner_ca: Domain,
    short_tmp: Path,
) -> None:
    """svid.pem, svid.key (0600, matching), bundle.pem and the federated bundle appear, and a rotation replaces them."""
    out = short_tmp / "certs"
    request = WatchRequest(directory=out, socket=server.settings.endpoint)
    async with _watching(request):
        first = await eventually(lambda: _serial(out / "svid.pem"), what="svid.pem")
        leaf = x509.load_pem_x509_certificates((out / "svid.pem").read_bytes())[0]
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.UniformResourceIdentifier) == [str(WORKLOAD_ID)]
        key_path = out / "svid.key"
        assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        assert key.public_key() == leaf.public_key()
        assert (out / "bundle.pem").read_bytes() == ca.bundle.to_pem()
        assert (
            out / "federated_bundle.partner.test.pem"
        ).read_bytes() == partner_ca.bundle.to_pem()

        rotated = workload_svid(ca, WORKLOAD_ID, federates_with=frozenset({FEDERATED}))
        source.put(rotated, selectors=[my_uid()])
        second = await eventually(
            lambda: (s := _serial(out / "svid.pem")) != first and s, what="the rotated svid.pem"
        )
        assert second != first
    # No temporary file is left behind by the atomic writes.
    assert sorted(p.name for p in out.iterdir()) == [
        "bundle.pem",
        "federated_bundle.partner.test.pem",
        "svid.key",
        "svid.pem",
    ]


_SIGNAL_COUNTER = """
import signal, sys, pathlib
log = pathlib.Path(sys.argv[1])
def hup(number, frame):
    with log.open("a") as out:
        out.write("hup\\n")
signal.signal(signal.SIGHUP, hup)
pathlib.Path(sys.argv[2]).write_text(f"{__import__('os').getpid()}\\n/some/data/dir\\n")
while True:
    signal.pause()
"""


async def test_the_process_in_the_pid_file_is_signalled_after_each_update(
    server: WorkloadApiServer, source: InMemoryIdentitySource, ca: Domain, short_tmp: Path
) -> None:
    """A real process whose PID heads the pid file gets SIGHUP after the first write and after a rotation."""
    log, pid_file = short_tmp / "hups", short_tmp / "server.pid"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _SIGNAL_COUNTER, str(log), str(pid_file)
    )
    try:
        await eventually(pid_file.exists, what="the pid file")
        request = WatchRequest(
            directory=short_tmp / "certs",
            socket=server.settings.endpoint,
            signal=signal.SIGHUP,
            pid_file=pid_file,
        )
        async with _watching(request):
            await eventually(
                lambda: log.exists() and log.read_text().count("hup") == 1, what="1 HUP"
            )
            source.put(workload_svid(ca, WORKLOAD_ID), selectors=[my_uid()])
            await eventually(lambda: log.read_text().count("hup") == 2, what="a second HUP")
    finally:
        process.kill()
        await process.wait()


async def test_the_command_runs_after_the_files_are_in_place(
    server: WorkloadApiServer, source: InMemoryIdentitySource, ca: Domain, short_tmp: Path
) -> None:
    """``--exec`` runs once per update and sees the new certificate (openssl reads each serial)."""
    out, seen = short_tmp / "certs", short_tmp / "serials"
    script = f"openssl x509 -in {out}/svid.pem -noout -serial >> {seen}"
    request = WatchRequest(
        directory=out, socket=server.settings.endpoint, command=("sh", "-c", script)
    )
    async with _watching(request):
        await eventually(lambda: seen.exists() and seen.read_text().count("serial=") == 1, what="1")
        source.put(workload_svid(ca, WORKLOAD_ID), selectors=[my_uid()])
        await eventually(lambda: seen.read_text().count("serial=") == 2, what="a second run")
    serials = [int(line.split("=")[1], 16) for line in seen.read_text().split()]
    assert serials[1] == _serial(out / "svid.pem")
    assert serials[0] != serials[1]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--signal", "HUP"], "--signal and --pid-file go together"),
        (["--signal", "NOPE", "--pid-file", "x.pid"], "unknown signal 'NOPE'"),
        (["--exec"], "--exec needs a command"),
        (["--signal", "HUP", "--pid-file", "x.pid", "--exec", "true"], "either --exec or --signal"),
    ],
)
def test_bad_options_are_refused_with_the_reason(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Options that cannot work exit 2 and say what was wrong."""
    assert main(["api", "watch", "--write", str(tmp_path), *argv]) == 2
    assert message in capsys.readouterr().err


def test_signals_are_read_by_name_or_number() -> None:
    """HUP, sighup and 1 are the same signal."""
    assert parse_signal("HUP") is parse_signal("sighup") is parse_signal("1") is signal.SIGHUP


async def test_the_command_stops_cleanly_on_sigterm(
    server: WorkloadApiServer, short_tmp: Path
) -> None:
    """The real ``sigil-agent api watch`` process writes the files, then exits 0 on SIGTERM."""
    out = short_tmp / "certs"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "sigil.node_agent.cli", "api", "watch"),
        *("--socket", str(server.settings.socket_path), "--write", str(out)),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await eventually(lambda: _serial(out / "svid.pem"), what="svid.pem", within=30)
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 10)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, stderr.decode()
    assert b"watch stopped" in stderr
