"""Signing in worker processes, so that issuance uses every core and not just the one the event loop runs on.

The issuer's process spends most of its CPU on two things that need nothing from it but bytes: verifying each CSR's
signature and signing each leaf. A :class:`SigningPool` runs both in ``workers`` processes (``ca.signing_workers``)
while the event loop keeps HTTP, authorization and the journal. What crosses to a worker is plain data:

- the CSRs' bytes, and back each key as SubjectPublicKeyInfo DER or the reason it was refused;
- the leaves (:class:`~sigil.ca.leaf_template.Leaf`), the active authority's certificate, and its private key as
  PKCS#8 DER, through the pool's pipe in memory (never a file, never an argument on a command line, never logged:
  :class:`_SignerSpec` leaves the key out of its ``repr``); back, each certificate's DER.

A worker keeps one template per authority, so the key is parsed once per authority and process.

A worker that dies (killed, out of memory) breaks the executor for every batch in flight (``BrokenProcessPool``).
The pool then starts a fresh set of workers and runs each of those batches once more: a batch has no effect until
its certificates come back (nothing is journaled or answered before), so a second run is safe. A batch that breaks
the fresh workers as well fails with :class:`~sigil.ca.errors.SigningUnavailableError` (HTTP 503), never hangs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from sigil.ca.authority import Signer
from sigil.ca.csr import verify_csr_keys
from sigil.ca.errors import MalformedCsrError, SigningUnavailableError
from sigil.ca.keys import private_key_der
from sigil.ca.leaf_template import Leaf, LeafTemplate
from sigil.ca.minting import X509Request, plan_x509_batch, x509_svids
from sigil.ca.settings import CaSettings
from sigil.ca.x509svid import X509Svid

__all__ = ["SigningPool"]

_log = structlog.get_logger(__name__)
_T = TypeVar("_T")
_I = TypeVar("_I")
#: A batch is cut into one part per worker, but not into parts smaller than this (each part is a round trip).
_MIN_PART = 8


@dataclass(frozen=True, slots=True)
class _SignerSpec:
    """What a worker needs to sign as one authority; the key is kept out of ``repr`` so no log line can show it."""

    authority_id: str
    certificate_der: bytes
    key_der: bytes = field(repr=False)


#: Each worker process's templates by authority ID (this dictionary lives in the workers, not in the server).
_templates: dict[str, LeafTemplate] = {}


def _template(spec: _SignerSpec) -> LeafTemplate:
    template = _templates.get(spec.authority_id)
    if template is None:
        from sigil.ca.x509svid import leaf_template  # the leaf rules, imported once per worker

        key = serialization.load_der_private_key(spec.key_der, password=None)
        certificate = x509.load_der_x509_certificate(spec.certificate_der)
        template = leaf_template(
            key,  # type: ignore[arg-type]  # the server sends only the keys it signs with
            issuer_name=certificate.subject,
            authority_key_identifier=x509.AuthorityKeyIdentifier.from_issuer_public_key(
                key.public_key()  # type: ignore[arg-type]
            ),
        )
        # Authorities come and go with rotation; the ones before the last few sign nothing any more.
        if len(_templates) >= 4:
            _templates.clear()
        _templates[spec.authority_id] = template
    return template


def _sign_in_worker(spec: _SignerSpec, leaves: Sequence[Leaf]) -> list[bytes]:
    return _template(spec).certificates(leaves)


def _ready() -> int:
    """Run once by each worker at start, so that the first batch does not wait for a process to spawn."""
    return 0


class SigningPool:
    """``workers`` processes that verify CSRs and sign leaves; close with :meth:`aclose`."""

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"a signing pool needs at least one worker, not {workers}")
        self.workers = workers
        self._context = multiprocessing.get_context(
            "spawn"
        )  # never fork a process that runs threads
        self._executor = self._new_executor()
        self._keys: dict[str, _SignerSpec] = {}

    def _new_executor(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self.workers, mp_context=self._context)

    async def start(self) -> None:
        """Spawn every worker now rather than on the first batch."""
        await asyncio.gather(*(self._run(_ready) for _ in range(self.workers)))

    @property
    def pids(self) -> frozenset[int]:
        """The workers' process IDs (for operators and tests)."""
        return frozenset(self._executor._processes or ())

    async def verify_csrs(self, csrs: Sequence[bytes]) -> list[bytes | MalformedCsrError]:
        """Each CSR's verified key (SubjectPublicKeyInfo DER) or why it is refused, as ``verify_csr_keys``."""
        answers = await self._spread(verify_csr_keys, csrs)
        return [a if isinstance(a, bytes) else MalformedCsrError(a) for a in answers]

    async def certificates(self, signer: Signer, leaves: Sequence[Leaf]) -> list[bytes]:
        """Each leaf signed by ``signer``, as Certificate DER, in order."""
        return await self._spread(_sign_in_worker, leaves, self._spec(signer))

    async def mint(
        self,
        signer: Signer,
        requests: Sequence[X509Request],
        now: datetime,
        *,
        settings: CaSettings,
    ) -> list[X509Svid]:
        """``mint_x509_batch`` with the CSR checks and the signatures here; the leaf rules stay in the caller."""
        csrs = [r.csr for r in requests if r.spki is None and isinstance(r.csr, bytes)]
        if csrs:
            keys = iter(await self.verify_csrs(csrs))
            verified = []
            for request in requests:
                if request.spki is None and isinstance(request.csr, bytes):
                    key = next(keys)
                    if isinstance(key, MalformedCsrError):
                        raise key
                    request = dataclasses.replace(request, spki=key)
                verified.append(request)
            requests = verified
        # Only keys the CA must generate (``x509 mint``) cost anything in planning; that goes to a thread.
        leaves, made = await asyncio.to_thread(
            plan_x509_batch, signer, requests, now, settings=settings
        )
        return x509_svids(signer, requests, await self.certificates(signer, leaves), made)

    async def _spread(
        self, function: Callable[..., list[_T]], items: Sequence[_I], *fixed: object
    ) -> list[_T]:
        """``function(*fixed, part)`` over ``items`` cut into a part per worker, side by side; answers in order."""
        size = max(_MIN_PART, -(-len(items) // self.workers))
        parts = [list(items[i : i + size]) for i in range(0, len(items), size)]
        answers = await asyncio.gather(*(self._run(function, *fixed, part) for part in parts))
        return [answer for part in answers for answer in part]

    def _spec(self, signer: Signer) -> _SignerSpec:
        authority = signer.authority
        spec = self._keys.get(authority.authority_id)
        if spec is None:
            if authority.certificate is None:
                raise TypeError(f"authority {authority.authority_id} is not an X.509 authority")
            spec = _SignerSpec(
                authority.authority_id,
                authority.certificate.public_bytes(serialization.Encoding.DER),
                private_key_der(signer.private_key),
            )
            self._keys = {authority.authority_id: spec}  # only the active authority signs
        return spec

    async def _run(self, function: Callable[..., _T], *args: object) -> _T:
        loop = asyncio.get_running_loop()
        for attempt in (1, 2):
            executor = self._executor
            try:
                return await loop.run_in_executor(executor, function, *args)
            except BrokenProcessPool:
                _log.warning("signing.worker_lost", attempt=attempt, workers=self.workers)
                if executor is self._executor:
                    # The first batch to notice replaces the workers; the others find the fresh set in place.
                    executor.shutdown(wait=False, cancel_futures=True)
                    self._executor = self._new_executor()
        raise SigningUnavailableError("a signing worker died twice over the same batch")

    async def aclose(self) -> None:
        executor = self._executor
        await asyncio.get_running_loop().run_in_executor(None, executor.shutdown)
