"""Helpers every handler module shares: the issuer from the request, the caller's rate, SVIDs as wire bodies."""

from __future__ import annotations

import binascii
import functools
from collections.abc import Sequence
from json.encoder import encode_basestring_ascii

from aiohttp import web

from sigil.ca.errors import MalformedCsrError
from sigil.ca.x509svid import X509Svid
from sigil.issuer.agentapi import contract
from sigil.issuer.agents.authentication import CallingAgent
from sigil.issuer.edge.parts import ISSUER, Issuer

__all__ = [
    "authenticated_agent",
    "issuer_of",
    "parse_csrs",
    "peer_address",
    "svid_body",
    "svid_json",
]


def issuer_of(request: web.Request) -> Issuer:
    return request.app[ISSUER]


def peer_address(request: web.Request) -> str:
    return request.remote or "unknown"


async def authenticated_agent(request: web.Request) -> CallingAgent:
    """The calling agent, its SVID checked afresh for this request (:mod:`sigil.issuer.agents.authentication`: 401/403 when
    it is not a live agent SVID), charged one request against its rate."""
    issuer = issuer_of(request)
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    verified = issuer.agents.verified_peer(ssl_object)
    issuer.limiter.check(str(verified.spiffe_id))
    return await issuer.agents.authenticate(verified)


def svid_body(svid: X509Svid) -> contract.X509SvidBody:
    return {
        "spiffe_id": str(svid.spiffe_id),
        "chain_pem": svid.chain_pem().decode(),
        "expires_at": svid.not_after.isoformat(),
        "signer_ids": [svid.authority_id],
    }


def svid_json(svid: X509Svid) -> str:
    """``svid_body(svid)`` as ``json.dumps`` writes it, without the dict: a batch answers a hundred of these.

    Byte for byte the same text (a test holds it to that). The PEM's only character JSON escapes is the line
    break (RFC 7468 §3: base64, dashes, spaces and labels), so the leaf's PEM is written with its breaks escaped
    rather than written and then escaped; the chain above it, which a batch's SVIDs share, is escaped once. Each string value goes through the function ``json.dumps`` itself calls for a string.
    """
    text = binascii.b2a_base64(svid.leaf_der, newline=False).decode("ascii")
    lines = "\\n".join([text[i : i + 64] for i in range(0, len(text), 64)])
    return (
        f'{{"spiffe_id": {_string(str(svid.spiffe_id))}, '
        f'"chain_pem": "-----BEGIN CERTIFICATE-----\\n{lines}\\n-----END CERTIFICATE-----\\n'
        f'{_escaped_pem(svid.above_leaf.pem)}", '
        f'"expires_at": {_string(svid.not_after.isoformat())}, '
        f'"signer_ids": [{_string(svid.authority_id)}]}}'
    )


#: What ``json.dumps`` returns for a ``str`` with its default ``ensure_ascii``, without its encoder's set-up.
_string = encode_basestring_ascii


@functools.lru_cache(maxsize=8)
def _escaped_pem(pem: bytes) -> str:
    """The intermediates' PEM as it stands inside a JSON string (one chain per signer)."""
    return pem.decode("ascii").replace("\n", "\\n")


async def parse_csrs(issuer: Issuer, csrs: Sequence[str]) -> list[bytes | MalformedCsrError]:
    """Each CSR's verified key as SubjectPublicKeyInfo DER (``X509Request.spki``), or why it is malformed.

    The CA checks them in its signing workers, or in a thread: signature checks are CPU work.
    """
    return await issuer.ca.verify_csrs([text.encode() for text in csrs])
