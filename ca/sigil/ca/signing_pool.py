"""Signing in worker processes, so that issuance uses every core and not just the one the event loop runs on.

The issuer spends most of its CPU on two things that need nothing from it but bytes: verifying each CSR's signature
and signing each leaf. A :class:`SigningPool` runs both in ``workers`` processes (``ca.signing_workers``) while the
event loop keeps HTTP, authorization and the journal. What crosses to a worker (:mod:`sigil.ca.signing_worker`,
over its stdin and stdout) is plain data:

- the leaves (:class:`~sigil.ca.leaf_template.Leaf`), each with the CSR whose key it certifies when that CSR is
  still to be verified, the active authority's certificate, and its private key as PKCS#8 DER, through the pipe in
  memory: never a file, never a command-line argument, never logged (:class:`_SignerSpec` leaves the key out of its
  ``repr``); back, per CSR, its certificates' DER or the reason the CSR was refused. One round trip per batch: the
  leaf rules, and before them every entitlement check of the issuer, are applied here first, so nothing is signed
  that was not decided in the server;
- for a CSR alone, its bytes, and back its key as SubjectPublicKeyInfo DER or the reason it was refused.

A batch is cut into one part per worker. A worker that dies (killed, out of memory) is replaced at once and the part
it held runs once more on another: nothing of a batch is journaled or answered before all its certificates are
back, so a second run is safe. A part that kills its second worker too fails the batch with
:class:`~sigil.ca.errors.SigningUnavailableError` (HTTP 503) rather than going on killing workers.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from cryptography.hazmat.primitives import serialization

from sigil.ca.authority import Signer
from sigil.ca.errors import MalformedCsrError, SigningUnavailableError
from sigil.ca.keys import private_key_der
from sigil.ca.leaf_template import Leaf
from sigil.ca.minting import (
    CsrGrants,
    X509Request,
    grant_items,
    leaf_rows,
    per_csr_svids,
    plan_grants,
    plan_x509_batch,
    x509_svids,
)
from sigil.ca.settings import CaSettings
from sigil.ca.signing_worker import FRAME_HEADER, decode_frame, encode_frame
from sigil.ca.x509svid import X509Svid

__all__ = ["SigningPool"]

_log = structlog.get_logger(__name__)
#: A batch is cut into one part per worker, but not into parts smaller than this (each part is a round trip).
_MIN_PART = 8


@dataclass(frozen=True, slots=True)
class _SignerSpec:
    """What a worker needs to sign as one authority; the key is kept out of ``repr`` so no log line can show it."""

    authority_id: str
    certificate_der: bytes
    key_der: bytes = field(repr=False)


class _WorkerLostError(Exception):
    """The worker's pipe closed mid-job: it died."""


class _Worker:
    """One worker process, one job at a time, spoken to through its stdin and stdout pipes."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls) -> _Worker:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "sigil.ca.signing_worker",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        worker = cls(process)
        await worker.call("ready", ())
        return worker

    async def call(self, operation: str, arguments: tuple[Any, ...]) -> Any:
        """Run one job; ValueError carries the worker's refusal, _WorkerLostError its death."""
        stdin, stdout = self.process.stdin, self.process.stdout
        if stdin is None or stdout is None:
            raise TypeError("a signing worker is started with both pipes")
        try:
            stdin.write(encode_frame((operation, arguments)))
            await stdin.drain()
            header = await stdout.readexactly(FRAME_HEADER.size)
            (size,) = FRAME_HEADER.unpack(header)
            ok, result = decode_frame(await stdout.readexactly(size))
        except (asyncio.IncompleteReadError, ConnectionError) as err:
            raise _WorkerLostError from err
        if not ok:
            raise ValueError(result)
        return result

    async def stop(self) -> None:
        """Close its stdin (a worker exits at the end of its jobs) and wait; kill it if it does not go."""
        if self.process.stdin is not None and not self.process.stdin.is_closing():
            self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), timeout=5)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


class _Slot:
    """A place for one worker; empty until a job needs it, and again after its worker died."""

    __slots__ = ("worker",)

    def __init__(self) -> None:
        self.worker: _Worker | None = None


class SigningPool:
    """``workers`` processes that verify CSRs and sign leaves; :meth:`start` them, :meth:`aclose` when done."""

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"a signing pool needs at least one worker, not {workers}")
        self.workers = workers
        self._slots = [_Slot() for _ in range(workers)]
        self._idle: asyncio.Queue[_Slot] = asyncio.Queue()
        for slot in self._slots:
            self._idle.put_nowait(slot)
        self._spec: _SignerSpec | None = None
        self._stopping: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Start every worker now rather than on the first batch."""
        await asyncio.gather(*(self._run("ready", ()) for _ in range(self.workers)))

    @property
    def pids(self) -> frozenset[int]:
        """The workers' process IDs (for operators and tests)."""
        return frozenset(s.worker.process.pid for s in self._slots if s.worker is not None)

    async def verify_csrs(self, csrs: Sequence[bytes]) -> list[bytes | MalformedCsrError]:
        """Each CSR's verified key (SubjectPublicKeyInfo DER) or why it is refused, as ``verify_csr_keys``."""
        answers = await self._spread("verify", (), csrs)
        return [a if isinstance(a, bytes) else MalformedCsrError(a) for a in answers]

    async def mint(
        self,
        signer: Signer,
        requests: Sequence[X509Request],
        now: datetime,
        *,
        settings: CaSettings,
    ) -> list[X509Svid]:
        """``mint_x509_batch`` with the CSR checks and the signatures in the workers; the leaf rules stay here.

        A CSR that does not verify refuses the whole batch (:class:`MalformedCsrError`), as in process.
        """
        # Only keys the CA must generate (``x509 mint``) or CSRs given parsed cost anything in planning; such a batch
        # goes to a thread. The rest is plain bookkeeping, cheaper here than the thread's two hops.
        if all(
            r.spki is not None or r.public_key is not None or isinstance(r.csr, bytes)
            for r in requests
        ):
            leaves, made = plan_x509_batch(
                signer, requests, now, settings=settings, csrs_later=True
            )
        else:
            leaves, made = await asyncio.to_thread(
                plan_x509_batch, signer, requests, now, settings=settings, csrs_later=True
            )
        items = [
            # The requests whose leaf ``plan_x509_batch`` left with KEY_FROM_CSR.
            (r.csr if r.spki is None and isinstance(r.csr, bytes) else None, (leaf,))
            for r, leaf in zip(requests, leaves, strict=True)
        ]
        certificates = []
        for answer in await self.sign(signer, items):
            if isinstance(answer, MalformedCsrError):
                raise answer
            certificates.append(answer[0])
        return x509_svids(signer, requests, leaves, certificates, made)

    async def mint_per_csr(
        self,
        signer: Signer,
        batch: Sequence[CsrGrants],
        now: datetime,
        *,
        settings: CaSettings,
    ) -> list[list[X509Svid] | MalformedCsrError]:
        """``mint_x509_per_csr`` with each CSR checked and its leaves signed in one worker call."""
        items = grant_items(batch, plan_grants(signer, batch, now, settings=settings))
        return per_csr_svids(signer, batch, items, await self.sign(signer, items))

    async def sign(
        self, signer: Signer, items: Sequence[tuple[bytes | None, Sequence[Leaf]]]
    ) -> list[list[bytes] | MalformedCsrError]:
        """Each item's leaves signed by ``signer``, as Certificate DER, in order; or why the item's CSR is refused.

        An item with a CSR has it verified in the worker, and its leaves (planned with ``KEY_FROM_CSR``) signed
        over its key; an item without one has its leaves signed as they are.
        """
        spec = self._spec_of(signer)
        # Plain tuples cross the pipe: pickling the dataclass itself cost ten times as much. The leaves of a batch
        # share their validity; one object per time lets pickle write it once and refer back (3 µs a leaf, then 0.7).
        same: dict[datetime, datetime] = {}
        parts = [(csr, leaf_rows(leaves, same)) for csr, leaves in items]
        answers = await self._spread(
            "sign", (spec.authority_id, spec.certificate_der, spec.key_der), parts
        )
        return [a if isinstance(a, list) else MalformedCsrError(a) for a in answers]

    def _spec_of(self, signer: Signer) -> _SignerSpec:
        authority = signer.authority
        if self._spec is None or self._spec.authority_id != authority.authority_id:
            if authority.certificate is None:
                raise TypeError(f"authority {authority.authority_id} is not an X.509 authority")
            self._spec = _SignerSpec(
                authority.authority_id,
                authority.certificate.public_bytes(serialization.Encoding.DER),
                private_key_der(signer.private_key),
            )
        return self._spec

    async def _spread(
        self, operation: str, fixed: tuple[Any, ...], items: Sequence[Any]
    ) -> list[Any]:
        """``operation(*fixed, part)`` over ``items`` cut into a part per worker, side by side; answers in order."""
        size = max(_MIN_PART, -(-len(items) // self.workers))
        parts = [list(items[i : i + size]) for i in range(0, len(items), size)]
        answers = await asyncio.gather(*(self._run(operation, (*fixed, p)) for p in parts))
        return [answer for part in answers for answer in part]

    async def _run(self, operation: str, arguments: tuple[Any, ...]) -> Any:
        for attempt in (1, 2):
            slot = await self._idle.get()
            try:
                if slot.worker is None:
                    slot.worker = await _Worker.start()
                return await slot.worker.call(operation, arguments)
            except _WorkerLostError:
                _log.warning("signing.worker_lost", attempt=attempt)
                self._empty(slot)
            except OSError as err:
                self._empty(slot)
                raise SigningUnavailableError(f"cannot start a signing worker ({err})") from err
            except asyncio.CancelledError:
                # Its answer may still be on the way: the worker goes, the next job starts a fresh one.
                self._empty(slot)
                raise
            finally:
                self._idle.put_nowait(slot)
        raise SigningUnavailableError("a signing worker died twice over the same batch")

    def _empty(self, slot: _Slot) -> None:
        """Stop the slot's worker in the background (it is dead or mid-job) and leave the slot empty."""
        if slot.worker is not None:
            if slot.worker.process.returncode is None:
                slot.worker.process.kill()
            task = asyncio.create_task(slot.worker.stop())
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)
            slot.worker = None

    async def aclose(self) -> None:
        await asyncio.gather(*self._stopping, return_exceptions=True)
        await asyncio.gather(*(s.worker.stop() for s in self._slots if s.worker is not None))
        for slot in self._slots:
            slot.worker = None
