"""``sigil-agent api watch``: keep a workload's SVID and bundles current in files, for programs that only read files.

Many servers (PostgreSQL, nginx, HAProxy) know nothing of the Workload API but reload certificates from disk on a
signal or a command. This follows the Workload API's X509-SVID stream, as spiffe-helper does for SPIRE
(https://github.com/spiffe/spiffe-helper), and after every update writes into the directory:

- ``svid.pem``: the default X509-SVID's chain, leaf first;
- ``svid.key``: its private key, PKCS#8 PEM, mode 0600;
- ``bundle.pem``: the authorities of the SVID's own trust domain;
- ``federated_bundle.<trust domain>.pem``: one file per federated trust domain (stale ones are removed).

Each file is replaced atomically (a temporary file in the same directory, fsync, rename), so a reader never sees a
half-written file; the bundles go first, then the key, then the certificate, and the command or signal comes only
once all files are in place. Then it runs ``--exec CMD...`` (waiting for it; a failure is logged, the watch goes on) or sends
``--signal SIG`` to the process whose PID is the first line of ``--pid-file`` (PostgreSQL's ``postmaster.pid``,
nginx's ``nginx.pid``). A pid file that is missing or names no process is logged and skipped: the server may not
be up yet, and it reads the current files when it starts. SIGTERM or Ctrl-C stops the watch cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import structlog

from sigil.ca.keys import write_file_atomically, write_secret_file
from sigil.enforcer.sources import X509Material
from sigil.enforcer.workload_source import WorkloadApiSource

__all__ = ["WatchRequest", "parse_signal", "watch", "write_material"]

_log = structlog.get_logger(__name__)

_FEDERATED_PREFIX = "federated_bundle."
_PUBLIC = 0o644  # certificates are not secret; the server reading them may run as another user


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchRequest:
    """One ``api watch`` invocation; the socket is a ``unix://`` URI, or None for ``SPIFFE_ENDPOINT_SOCKET``."""

    directory: Path
    socket: str | None = None
    command: tuple[str, ...] = ()
    signal: signal.Signals | None = None
    pid_file: Path | None = None
    timeout: float = 10.0

    def __post_init__(self) -> None:
        if (self.signal is None) != (self.pid_file is None):
            raise ValueError("--signal and --pid-file go together: which signal, to which process")
        if self.command and self.signal is not None:
            raise ValueError("give either --exec or --signal with --pid-file, not both")


def write_material(directory: Path, material: X509Material) -> list[Path]:
    """Write the SVID, its key and the bundles of ``material`` into ``directory``; the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    own = material.spiffe_id.trust_domain
    # Bundles first, then the key, then the certificate: a reader that waits for svid.pem finds everything in place,
    # and a server reloading between two renames never pairs a new chain with the old key.
    written = [directory / "bundle.pem"]
    write_file_atomically(written[0], material.bundles[own].to_pem(), mode=_PUBLIC)
    federated = set()
    for trust_domain, bundle in sorted(material.bundles.items()):
        if trust_domain == own:
            continue
        path = directory / f"{_FEDERATED_PREFIX}{trust_domain.name}.pem"
        write_file_atomically(path, bundle.to_pem(), mode=_PUBLIC)
        federated.add(path)
        written.append(path)
    for stale in directory.glob(f"{_FEDERATED_PREFIX}*.pem"):
        if stale not in federated:
            stale.unlink(missing_ok=True)
    write_secret_file(directory / "svid.key", material.key_pem())
    write_file_atomically(directory / "svid.pem", material.chain_pem(), mode=_PUBLIC)
    written += [directory / "svid.key", directory / "svid.pem"]
    return written


def _pid_of(pid_file: Path) -> int | None:
    try:
        first = pid_file.read_text().splitlines()[0].strip()
    except (FileNotFoundError, IndexError):
        return None
    return int(first) if first.isdigit() else None


async def _notify(request: WatchRequest) -> None:
    if request.command:
        try:
            process = await asyncio.create_subprocess_exec(*request.command)
        except OSError as err:
            _log.error("watch.exec_failed", command=request.command[0], reason=str(err))
            return
        status = await process.wait()
        log = _log.info if status == 0 else _log.error
        log("watch.exec_done", command=request.command[0], status=status)
    elif request.signal is not None and request.pid_file is not None:
        pid = _pid_of(request.pid_file)
        if pid is None:
            _log.warning("watch.no_process", pid_file=str(request.pid_file))
            return
        try:
            os.kill(pid, request.signal)
        except ProcessLookupError:
            _log.warning("watch.no_process", pid_file=str(request.pid_file), pid=pid)
            return
        _log.info("watch.signalled", pid=pid, signal=request.signal.name)


async def _apply(request: WatchRequest, material: X509Material) -> None:
    await asyncio.to_thread(write_material, request.directory, material)
    leaf = material.chain[0]
    _log.info(
        "watch.written",
        directory=str(request.directory),
        spiffe_id=str(material.spiffe_id),
        serial=f"{leaf.serial_number:x}",
    )
    await _notify(request)


def _content(material: X509Material) -> tuple[object, ...]:
    # Certificates and bundle sets compare by content; the key goes with the leaf.
    return (material.chain, material.bundles)


async def watch(request: WatchRequest, *, stop: asyncio.Event) -> None:
    """Write the files now and after every update until ``stop`` is set; raises IdentitySourceError at start."""
    updates: asyncio.Queue[X509Material] = asyncio.Queue()
    async with await WorkloadApiSource.open(request.socket, wait_seconds=request.timeout) as source:
        source.subscribe(updates.put_nowait)
        await _apply(request, source.current())
        written = _content(source.current())
        stopped = asyncio.ensure_future(stop.wait())
        update: asyncio.Future[X509Material] | None = None
        try:
            while True:
                update = asyncio.ensure_future(updates.get())
                await asyncio.wait({update, stopped}, return_when=asyncio.FIRST_COMPLETED)
                if not update.done():
                    return
                material = update.result()
                while not updates.empty():  # several pushes while writing: only the newest matters
                    material = updates.get_nowait()
                # The stream resends after any change the agent sees; the files change only with the content.
                if _content(material) != written:
                    await _apply(request, material)
                    written = _content(material)
        finally:
            for pending in (stopped, update):
                if pending is not None and not pending.done():
                    pending.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await pending


def parse_signal(name: str) -> signal.Signals:
    """``HUP``, ``SIGHUP`` or ``1`` as a signal; ValueError naming the input otherwise."""
    text = name.strip().upper()
    if text.isdigit():
        return signal.Signals(int(text))
    try:
        return signal.Signals[text if text.startswith("SIG") else f"SIG{text}"]
    except KeyError:
        raise ValueError(f"unknown signal {name!r} (for example HUP, USR1, SIGTERM)") from None
