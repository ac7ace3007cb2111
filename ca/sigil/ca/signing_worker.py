"""One signing worker process: reads jobs on stdin, answers on stdout, imports nothing but the signing code.

Started by :class:`~sigil.ca.signing_pool.SigningPool` as ``python -m sigil.ca.signing_worker``, never by hand. A
job is a frame (4-byte big-endian length, then a pickle from the server, the only writer of this pipe) holding
``(operation, arguments)``; the answer is a frame holding ``(True, result)`` or ``(False, message)``. The worker
exits when its stdin closes. It keeps one template per authority (the key parsed once per authority), and nothing
it does is logged: the key arrives inside a job and lives only in this process's memory.

Its own module rather than a ``multiprocessing`` target because a spawned ``multiprocessing`` child imports the
server's ``__main__`` again, and with it SQLAlchemy, aiohttp and the Kubernetes client: over 100 MB per worker
instead of about 30.
"""

from __future__ import annotations

import pickle
import struct
import sys
from collections.abc import Sequence
from typing import IO, Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from sigil.ca.csr import sign_per_csr, verify_csr_keys
from sigil.ca.leaf_template import LeafTemplate

__all__ = ["FRAME_HEADER", "decode_frame", "encode_frame", "read_frame", "write_frame"]

#: Each frame starts with its length (4 bytes, big-endian).
FRAME_HEADER = struct.Struct(">I")
#: Authorities come and go with rotation; the ones before the last few sign nothing any more.
_KEEP_TEMPLATES = 4


def encode_frame(value: object) -> bytes:
    """``value`` as one frame: its pickle's length, then the pickle."""
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return FRAME_HEADER.pack(len(data)) + data


def decode_frame(body: bytes) -> Any:
    """The value of a frame's body (what follows its header)."""
    # Both ends of these pipes are the server and the worker it started; nothing else writes to them.
    return pickle.loads(body)  # noqa: S301


def write_frame(stream: IO[bytes], value: object) -> None:
    stream.write(encode_frame(value))
    stream.flush()


def read_frame(stream: IO[bytes]) -> Any:
    """The next frame's value, or EOFError when the other side has closed the pipe."""
    header = stream.read(FRAME_HEADER.size)
    if len(header) < FRAME_HEADER.size:
        raise EOFError
    (size,) = FRAME_HEADER.unpack(header)
    body = stream.read(size)
    if len(body) < size:
        raise EOFError
    return decode_frame(body)


class _Signer:
    """The templates this worker has made, by authority ID."""

    def __init__(self) -> None:
        self._templates: dict[str, LeafTemplate] = {}

    def sign(
        self,
        authority_id: str,
        certificate_der: bytes,
        key_der: bytes,
        items: Sequence[tuple[bytes | None, Sequence[tuple[Any, ...]]]],
    ) -> list[list[bytes] | str]:
        """:func:`~sigil.ca.csr.sign_per_csr` as ``authority_id``."""
        return sign_per_csr(self._template(authority_id, certificate_der, key_der), items)

    def _template(self, authority_id: str, certificate_der: bytes, key_der: bytes) -> LeafTemplate:
        template = self._templates.get(authority_id)
        if template is None:
            from sigil.ca.x509svid import leaf_template  # the leaf rules

            key = serialization.load_der_private_key(key_der, password=None)
            certificate = x509.load_der_x509_certificate(certificate_der)
            template = leaf_template(
                key,  # type: ignore[arg-type]  # the server sends only keys it signs with
                issuer_name=certificate.subject,
                authority_key_identifier=x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    key.public_key()  # type: ignore[arg-type]
                ),
            )
            if len(self._templates) >= _KEEP_TEMPLATES:
                self._templates.clear()
            self._templates[authority_id] = template
        return template


def _serve(jobs: IO[bytes], answers: IO[bytes]) -> None:
    signer = _Signer()
    while True:
        try:
            operation, arguments = read_frame(jobs)
        except EOFError:
            return
        try:
            if operation == "verify":
                result: object = verify_csr_keys(*arguments)
            elif operation == "sign":
                result = signer.sign(*arguments)
            elif operation == "ready":
                result = None
            else:
                raise ValueError(f"unknown operation {operation!r}")
        except ValueError as err:
            # A refusal the caller raises again (a CN too long, a name that is not ASCII): its text, no traceback.
            write_frame(answers, (False, str(err)))
        else:
            write_frame(answers, (True, result))


if __name__ == "__main__":
    _serve(sys.stdin.buffer, sys.stdout.buffer)
