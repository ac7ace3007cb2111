"""Steps 1 and 3 of :mod:`sigil.enforcer.tls`: the SPIFFE TLS gate of a new context, and an SVID loaded into it
through pipes, never a file on disk.

Apart from the contexts that follow an identity source, because the issuer builds its own contexts with these two
as well (its listener and its client), and neither needs the rest.
"""

from __future__ import annotations

import contextlib
import os
import ssl
from collections.abc import Iterator
from typing import TypeVar

from sigil.enforcer.errors import IdentitySourceError

__all__ = ["load_identity", "spiffe_context"]

_PIPE_LIMIT = 60_000  # below Linux's 64 KiB pipe buffer: the write never blocks

_Context = TypeVar("_Context", bound=ssl.SSLContext)


def spiffe_context(context: _Context, anchors: str) -> _Context:
    """Step 1 of :mod:`sigil.enforcer.tls`'s docstring on a new ``context``: TLS 1.2 at least, no hostnames, ``anchors`` (PEM).

    The one SPIFFE TLS gate of Sigil: the issuer builds its own contexts with it too. A client context demands a
    server certificate; a server context is left for its caller to say whether a client certificate is required.
    """
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if context.protocol == ssl.PROTOCOL_TLS_CLIENT:
        context.check_hostname = False  # SPIFFE IDs, not DNS names, say who the server is
        context.verify_mode = ssl.CERT_REQUIRED
    if anchors:
        context.load_verify_locations(cadata=anchors)
    return context


def load_identity(context: ssl.SSLContext, chain_pem: bytes, key_pem: bytes, *, who: str) -> None:
    """Make the PEM ``chain_pem`` (leaf first) and unencrypted ``key_pem`` what ``context`` presents.

    Through pipes, never a file on disk (step 3 of :mod:`sigil.enforcer.tls`'s docstring); ``who`` names the SVID in errors.
    """
    with _pipe(chain_pem) as certfile, _pipe(key_pem) as keyfile:
        try:
            context.load_cert_chain(certfile, keyfile)
        except (ssl.SSLError, OSError) as err:
            raise IdentitySourceError(who, f"OpenSSL refused the SVID: {err}") from err


@contextlib.contextmanager
def _pipe(data: bytes) -> Iterator[str]:
    """A path OpenSSL can open that yields ``data`` once: Python 3.11 loads certificates only from paths."""
    if len(data) > _PIPE_LIMIT:
        raise IdentitySourceError(
            "SVID", f"{len(data)} bytes of PEM exceed the {_PIPE_LIMIT}-byte limit"
        )
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, data)
        os.close(write_end)
        write_end = -1
        yield f"/dev/fd/{read_end}"
    finally:
        if write_end >= 0:
            os.close(write_end)
        os.close(read_end)
