"""Request bodies of the agent API, parsed on the server into frozen values that say what was wrong.

The JSON shapes are :mod:`sigil.issuer.agentapi.contract`'s (the client builds those TypedDicts); a handler parses
the body once, here, and works on typed values from then on. Every refusal is a
:class:`~sigil.issuer.errors.MalformedRequestError` naming the member and what it must be, as the wire contract's
400 ``malformed_request`` promises. In a batch, one item's mistake is that item's problem, not the batch's, so
:class:`X509Batch` keeps its items raw and each is parsed in turn (:meth:`Subject.parse`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from sigil.issuer.agentapi.contract import MAX_BATCH
from sigil.issuer.errors import MalformedRequestError

__all__ = [
    "AttestK8s",
    "JwtSvids",
    "PodName",
    "Renew",
    "Subject",
    "TokenAndCsr",
    "X509Batch",
    "need_str",
]


def need_str(document: Mapping[str, Any], key: str) -> str:
    """``document[key]`` when it is a non-empty string; else :class:`MalformedRequestError`."""
    value = document.get(key)
    if not isinstance(value, str) or not value:
        raise MalformedRequestError(f"{key!r} must be a non-empty string")
    return value


@dataclass(frozen=True, slots=True)
class AttestK8s:
    """``POST /v1/agent/attest/k8s``: the agent's projected token, its cluster and a CSR for its key."""

    token: str
    cluster: str
    csr: str

    @classmethod
    def parse(cls, document: Mapping[str, Any]) -> Self:
        return cls(
            need_str(document, "token"), need_str(document, "cluster"), need_str(document, "csr")
        )


@dataclass(frozen=True, slots=True)
class TokenAndCsr:
    """A token and a CSR: a join token (``POST /v1/agent/attest/join-token``) or a workload's own projected token
    (``POST /v1/workload/x509``)."""

    token: str
    csr: str

    @classmethod
    def parse(cls, document: Mapping[str, Any]) -> Self:
        return cls(need_str(document, "token"), need_str(document, "csr"))


@dataclass(frozen=True, slots=True)
class Renew:
    """``POST /v1/agent/renew``: a CSR for the agent's next key."""

    csr: str

    @classmethod
    def parse(cls, document: Mapping[str, Any]) -> Self:
        return cls(need_str(document, "csr"))


@dataclass(frozen=True, slots=True)
class PodName:
    """A pod the agent attested, by namespace, name and UID (the contract's ``PodRef``)."""

    namespace: str
    name: str
    uid: str

    @classmethod
    def parse(cls, value: Any) -> Self:
        if not isinstance(value, dict):
            raise MalformedRequestError("'pod' must be an object")
        return cls(need_str(value, "namespace"), need_str(value, "name"), need_str(value, "uid"))


@dataclass(frozen=True, slots=True)
class Subject:
    """Whom an SVID is for: a pod, or the entries whose selectors match (narrowed to ``spiffe_id``)."""

    pod: PodName | None
    selectors: tuple[str, ...] | None
    spiffe_id: str | None

    @classmethod
    def parse(cls, document: Mapping[str, Any]) -> Self:
        pod, selectors, wanted = (
            document.get("pod"),
            document.get("selectors"),
            document.get("spiffe_id"),
        )
        if (pod is None) == (selectors is None):
            raise MalformedRequestError("each item names either 'pod' or 'selectors'")
        if pod is not None:
            return cls(PodName.parse(pod), None, None)
        if not isinstance(selectors, list) or not all(isinstance(s, str) for s in selectors):
            raise MalformedRequestError("'selectors' must be a list of strings")
        if wanted is not None and not isinstance(wanted, str):
            raise MalformedRequestError("'spiffe_id' must be a string")
        return cls(None, tuple(selectors), wanted)


@dataclass(frozen=True, slots=True)
class X509Batch:
    """``POST /v1/svids/x509``: up to :data:`MAX_BATCH` items, each a CSR and a :class:`Subject`."""

    items: tuple[Mapping[str, Any], ...]

    @classmethod
    def parse(cls, document: Mapping[str, Any]) -> Self:
        items = document.get("requests")
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise MalformedRequestError("'requests' must be a list of objects")
        if len(items) > MAX_BATCH:
            raise MalformedRequestError(f"at most {MAX_BATCH} items per batch")
        return cls(tuple(items))

    def csrs(self) -> list[str]:
        """Each item's CSR text; an absent or non-string one is empty, which fails as a malformed CSR."""
        return [i["csr"] if isinstance(i.get("csr"), str) else "" for i in self.items]


@dataclass(frozen=True, slots=True)
class JwtSvids:
    """``POST /v1/svids/jwt``: a non-empty audience and the :class:`Subject` of the JWT-SVIDs."""

    audience: tuple[str, ...]
    subject: Subject

    @classmethod
    def parse(cls, document: Mapping[str, Any]) -> Self:
        audience = document.get("audience")
        if (
            not isinstance(audience, list)
            or not audience
            or not all(isinstance(a, str) and a for a in audience)
        ):
            raise MalformedRequestError("'audience' must be a non-empty list of strings")
        return cls(tuple(audience), Subject.parse(document))
