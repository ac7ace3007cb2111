"""The ``upstream`` admin verbs as JSON-ready results: what :class:`~sigil.issuer.admin.LocalAdmin` answers.

Kept apart from the backend so that the upstream rotation's reporting (which authorities, which roots, what a force
cut) lives in one place; the steps themselves are :mod:`sigil.ca.upstream_rotation`'s.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from sigil.ca.errors import AuthorityError, UpstreamAuthorityError
from sigil.ca.service import CertificateAuthority
from sigil.ca.upstream_verbs import UpstreamVerbs
from sigil.issuer.admin.documents import authority_json, outstanding_json
from sigil.issuer.errors import AuthorityRefusedError, MalformedRequestError

__all__ = ["UPSTREAM_VERBS", "upstream_show", "upstream_step"]

Json = dict[str, Any]

#: The steps of an upstream rotation, in the order an operator takes them.
UPSTREAM_VERBS = ("prepare", "activate", "retire")


def _root_json(root: x509.Certificate) -> Json:
    return {
        "root_sha256": hashlib.sha256(root.public_bytes(serialization.Encoding.DER)).hexdigest(),
        "subject": root.subject.rfc4514_string(),
        "not_after": root.not_valid_after_utc.isoformat(),
    }


async def upstream_step(
    ca: CertificateAuthority, verb: str, directory: str | None, *, force: bool = False
) -> Json:
    """Run one step; a refusal comes back as :class:`AuthorityRefusedError` with the CA's own message."""
    if verb not in UPSTREAM_VERBS:
        raise MalformedRequestError(
            f"unknown upstream verb {verb!r} (one of {', '.join(UPSTREAM_VERBS)})"
        )
    verbs = UpstreamVerbs(ca)
    try:
        if verb == "prepare":
            if not directory:
                raise MalformedRequestError(
                    "upstream prepare needs the directory of the new files (--dir)"
                )
            prepared = await verbs.prepare(Path(directory))
            return {
                "authority": authority_json(prepared),
                "root": _root_json(_anchor(prepared.upstream_root)),
            }
        if verb == "activate":
            active, tainted = await verbs.activate()
            return {"authority": authority_json(active), "tainted": tainted}
        retired = await verbs.retire(force=force)
    except (AuthorityError, UpstreamAuthorityError) as err:
        raise AuthorityRefusedError("upstream", str(err)) from err
    result: Json = {"retired_roots": list(retired.roots), "revoked": list(retired.revoked)}
    if retired.cut.count:
        result["cut"] = outstanding_json(retired.cut)
    return result


def _anchor(root: x509.Certificate | None) -> x509.Certificate:
    if root is None:  # prepare_upstream always signs under an upstream; this would be a bug
        raise TypeError("an authority prepared by upstream prepare has no upstream root")
    return root


async def upstream_show(ca: CertificateAuthority) -> list[Json]:
    """Every recorded upstream, oldest first: its root, directory, status, authorities and what still chains to it."""
    return [
        {
            **_root_json(view.record.root),
            "directory": str(view.record.directory),
            "status": view.record.status.value,
            "authorities": [authority_json(a) for a in view.authorities],
            "outstanding": outstanding_json(view.outstanding),
        }
        for view in await UpstreamVerbs(ca).show()
    ]
