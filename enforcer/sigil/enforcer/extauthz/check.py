"""Envoy's ``CheckRequest`` read into what a Sigil decision needs, and a decision written back as a ``CheckResponse``.

What Envoy sends depends on the filter but comes from one function for both (``CheckRequestUtils::setAttrContextPeer``
in ``source/extensions/filters/common/ext_authz/check_request_utils.cc``): ``source.address`` is the downstream
connection's remote address and ``destination.address`` its local one (the port the listener accepted on);
``source.principal`` is the first URI SAN of the peer certificate Envoy verified, or its subject when it has none;
``source.certificate`` is the URL-encoded PEM leaf, sent only with ``include_peer_certificate: true``. The HTTP
filter also fills ``request.http``; the network (TCP) filter leaves it empty, and that is how the two are told
apart here.

The peer's SPIFFE ID comes from the certificate when Envoy sent it (the one URI SAN, read strictly as an X509-SVID
has it), else from a principal that is a SPIFFE ID. A connection without a client certificate, or with one that
names no SPIFFE ID, is decided as a peer without an SVID (authz.md part 7: it matches no identity source). A request
that cannot be read (no destination port, a certificate that is not PEM, a principal the certificate contradicts)
raises :class:`~sigil.enforcer.errors.RequestError`; the service answers it with a denial, never an allow.

Every answer carries the explanation three ways, since what the operator can see differs by filter: the status
message (Envoy logs it at debug and counts the denial), ``dynamic_metadata`` (both filters hand it to access
logs as ``%DYNAMIC_METADATA(envoy.filters.network.ext_authz:tier)%`` and the like), and, for HTTP, the 403's
``x-sigil-*`` headers and JSON body.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from envoy.config.core.v3.base_pb2 import HeaderValueOption
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest, CheckResponse
from envoy.type.v3.http_status_pb2 import StatusCode
from google.protobuf.struct_pb2 import Struct  # type: ignore[import-untyped]
from google.rpc import code_pb2

from sigil.ca.errors import CaError
from sigil.ca.spiffe_id import SCHEME, SpiffeId, spiffe_id_of
from sigil.enforcer.errors import RequestError
from sigil.enforcer.policy import Decision

__all__ = ["Connection", "allowed_response", "denied_response", "explanation", "read_check"]

#: A prefix every Sigil header in a response shares.
_HEADER_PREFIX = "x-sigil-"


@dataclass(frozen=True, slots=True)
class Connection:
    """What one ``CheckRequest`` says about the connection (or HTTP request) to decide."""

    #: The peer's SPIFFE ID; None when it presented no SVID.
    peer: SpiffeId | None
    #: The destination port (or the configured policy port).
    port: int
    #: The source address as ``ip:port`` (or a pipe's path), for the log; empty when Envoy sent none.
    source: str
    #: True for the HTTP filter (``request.http`` is set), False for the network filter.
    http: bool
    #: Why ``peer`` is None, for the log; None when there is a peer.
    anonymous: str | None = None
    #: The peer's IP address, which policies' ``sourceCIDRs`` judge; None when Envoy sent no socket address.
    address: str | None = None


def read_check(request: CheckRequest, *, policy_port: int | None = None) -> Connection:
    """The connection ``request`` describes; raises :class:`RequestError` naming the attribute that is wrong."""
    if not request.HasField("attributes"):
        raise RequestError("attributes", "", "Envoy sent no attributes")
    attributes = request.attributes
    port = policy_port
    if port is None:
        port = attributes.destination.address.socket_address.port_value
        if not 1 <= port <= 65535:
            raise RequestError(
                "destination.address", str(port), "no TCP port to decide for (give --port)"
            )
    peer, anonymous = _peer(attributes.source.principal, attributes.source.certificate)
    return Connection(
        peer=peer,
        port=port,
        source=_address(attributes.source.address),
        http=attributes.request.HasField("http"),
        anonymous=anonymous,
        address=_ip(attributes.source.address),
    )


def explanation(decision: Decision, connection: Connection) -> dict[str, Any]:
    """The decision as the response reports it: the verdict, the peer decided (and why none, when none), and the
    dry-run verdict when a dry-run policy applies."""
    data = decision.verdict.to_dict()
    data["peer"] = None if connection.peer is None else str(connection.peer)
    if connection.anonymous is not None:
        data["anonymous"] = connection.anonymous
    if decision.shadow is not None:
        data["dry_run"] = decision.shadow.to_dict()
    return data


def allowed_response(connection: Connection, explained: Mapping[str, Any]) -> CheckResponse:
    """An OK answer; a dry-run verdict also goes back to an HTTP client as ``x-sigil-dry-run``."""
    response = CheckResponse(dynamic_metadata=_struct(explained))
    response.status.code = code_pb2.OK
    response.status.message = _sentence(explained)
    if connection.http:
        response.ok_response.SetInParent()
        shadow = explained.get("dry_run")
        if shadow is not None:
            response.ok_response.response_headers_to_add.append(
                _header("dry-run", _shadow_header(shadow))
            )
    return response


def denied_response(http: bool, explained: Mapping[str, Any]) -> CheckResponse:
    """A PERMISSION_DENIED answer; for HTTP a 403 whose headers and JSON body say who denied and why."""
    response = CheckResponse(dynamic_metadata=_struct(explained))
    response.status.code = code_pb2.PERMISSION_DENIED
    response.status.message = _sentence(explained)
    if http:
        denied = response.denied_response
        denied.status.code = StatusCode.Forbidden
        denied.body = json.dumps(explained, sort_keys=True) + "\n"
        denied.headers.append(_header("decision", "denied"))
        for key in ("tier", "policy", "rule", "refusal"):
            if explained.get(key) is not None:
                denied.headers.append(_header(key, str(explained[key])))
        if explained.get("dry_run") is not None:
            denied.headers.append(_header("dry-run", _shadow_header(explained["dry_run"])))
        denied.headers.append(
            HeaderValueOption(header={"key": "content-type", "value": "application/json"})
        )
    return response


def _peer(principal: str, certificate: str) -> tuple[SpiffeId | None, str | None]:
    claimed: SpiffeId | None = None
    if principal.startswith(SCHEME):
        try:
            claimed = SpiffeId.parse(principal)
        except CaError:
            return None, f"the principal {principal[:80]!r} is not a valid SPIFFE ID"
    if not certificate:
        if claimed is None:
            return None, "no SPIFFE ID" if principal else "no client certificate"
        return claimed, None
    try:
        leaf = x509.load_pem_x509_certificate(urllib.parse.unquote(certificate).encode())
    except ValueError as err:
        raise RequestError("source.certificate", certificate[:40], "not a PEM certificate") from err
    try:
        named = spiffe_id_of(leaf)
    except CaError as err:
        return None, f"the certificate is no X509-SVID: {err}"
    if claimed is not None and claimed != named:
        raise RequestError(
            "source.principal", principal, f"contradicts the certificate, which names {named}"
        )
    return named, None


def _ip(address: Any) -> str | None:
    """The IP of a socket address; None for a pipe or no address (no rule with networks can then match)."""
    if address.HasField("socket_address") and address.socket_address.address:
        return str(address.socket_address.address)
    return None


def _address(address: Any) -> str:
    if address.HasField("socket_address"):
        socket = address.socket_address
        return f"{socket.address}:{socket.port_value}"
    if address.HasField("pipe"):
        return str(address.pipe.path)
    return ""


def _struct(data: Mapping[str, Any]) -> Struct:
    result = Struct()
    result.update(data)
    return result


def _header(name: str, value: str) -> HeaderValueOption:
    return HeaderValueOption(header={"key": _HEADER_PREFIX + name, "value": value})


def _shadow_header(shadow: Mapping[str, Any]) -> str:
    return f"{shadow['decision']}; {_sentence(shadow)}"


def _sentence(explained: Mapping[str, Any]) -> str:
    """``denied by namespace policy shop/web rule 0: <reason>``, or the refusal for fail-closed answers."""
    if explained.get("refusal") is not None:
        return f"{explained['decision']} ({explained['refusal']}): {explained['reason']}"
    who = f"{explained['tier']} tier"
    if explained.get("policy") is not None:
        who += f", policy {explained['policy']}"
    if explained.get("rule") is not None:
        who += f", rule {explained['rule']}"
    return f"{explained['decision']} by the {who}: {explained['reason']}"
