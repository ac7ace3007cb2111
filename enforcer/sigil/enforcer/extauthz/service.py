"""``envoy.service.auth.v3.Authorization/Check`` on grpclib, bound by hand to the message classes of ``xds-protos``.

grpclib, not grpcio's server: the enforcer already runs grpclib on its own event loop (the policy feed from the
agent), and a binding is one route (``__mapping__``), as the node agent writes its own services. Each call is read
(:func:`~.check.read_check`), refused before any policy runs when it must be, else decided by the same
:class:`~sigil.enforcer.authorizer.Authorizer` as the proxy's, which logs the decision as ``decision`` and counts
it; the answer carries the explanation (:mod:`.check`).

It fails closed, with the reason in the answer and the log, and counted like a peer refused at verification
(``sigil_enforcer_peer_refusals_total{reason=...}``): a request it cannot read (``malformed_request``), a peer of a
trust domain it was not told about (``unknown_trust_domain``: Envoy let it through, so Envoy's validation context
and this server disagree, and no policy was written for it), and any call before the first policy set is in force
(``no_policy``: allowing then would be deciding on no policy at all).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest, CheckResponse
from grpclib.const import Cardinality, Handler
from grpclib.server import Stream

from sigil.ca.spiffe_id import TrustDomain
from sigil.enforcer.authorizer import Authorizer
from sigil.enforcer.errors import RequestError
from sigil.enforcer.extauthz.check import (
    Connection,
    allowed_response,
    denied_response,
    explanation,
    read_check,
)

__all__ = ["CHECK_PATH", "AuthorizationService"]

#: The method Envoy's ext_authz filters call (envoy/service/auth/v3/external_auth.proto).
CHECK_PATH = "/envoy.service.auth.v3.Authorization/Check"

_log = structlog.get_logger(__name__)


class AuthorizationService:
    """Answers Envoy's ``Check`` for one pod with ``authorizer``, once ``ready()`` says a policy set is in force."""

    def __init__(
        self,
        authorizer: Authorizer,
        *,
        trust_domains: frozenset[TrustDomain],
        ready: Callable[[], bool],
        policy_port: int | None = None,
    ) -> None:
        self._authorizer = authorizer
        self._trust_domains = trust_domains
        self._ready = ready
        self._policy_port = policy_port

    def __mapping__(self) -> dict[str, Handler]:
        return {
            CHECK_PATH: Handler(self._check, Cardinality.UNARY_UNARY, CheckRequest, CheckResponse)
        }

    def check(self, request: CheckRequest) -> CheckResponse:
        """The answer to one ``Check``: allowed, or denied with who denied it and why."""
        http = request.attributes.request.HasField("http")
        try:
            connection = read_check(request, policy_port=self._policy_port)
        except RequestError as err:
            return self._refuse(http, "malformed_request", str(err), source="")
        if not self._ready():
            return self._refuse(
                http, "no_policy", "no policy set is in force yet", source=connection.source
            )
        peer = connection.peer
        if peer is not None and peer.trust_domain not in self._trust_domains:
            return self._refuse(
                http,
                "unknown_trust_domain",
                f"{peer} is of trust domain {peer.trust_domain}, which this server does not know",
                source=connection.source,
            )
        decision = self._authorizer.decide(peer, connection.port, address=connection.address)
        explained = explanation(decision, connection)
        self._log_extra(connection, explained)
        if decision.allowed:
            return allowed_response(connection, explained)
        return denied_response(connection.http, explained)

    async def _check(self, stream: Stream[CheckRequest, CheckResponse]) -> None:
        request = await stream.recv_message()
        if request is None:  # the caller half-closed without a message: nothing to answer
            return
        await stream.send_message(self.check(request))

    def _refuse(self, http: bool, refusal: str, reason: str, *, source: str) -> CheckResponse:
        _log.warning(
            "decision",
            decision="denied",
            tier=None,
            refusal=refusal,
            reason=reason,
            source=source,
            revision=self._authorizer.revision,
        )
        metrics = self._authorizer.metrics
        if metrics is not None:
            metrics.count_refusal(refusal)
        explained: dict[str, Any] = {
            "decision": "denied",
            "tier": None,
            "policy": None,
            "rule": None,
            "refusal": refusal,
            "reason": reason,
        }
        return denied_response(http, explained)

    @staticmethod
    def _log_extra(connection: Connection, explained: dict[str, Any]) -> None:
        """What the authorizer's ``decision`` event does not carry: a dry-run verdict that differs from it."""
        shadow = explained.get("dry_run")
        if shadow is not None and shadow["decision"] != explained["decision"]:
            _log.info(
                "decision.dry_run",
                decision=shadow["decision"],
                tier=shadow["tier"],
                policy=shadow["policy"],
                rule=shadow["rule"],
                reason=shadow["reason"],
                peer=None if connection.peer is None else str(connection.peer),
                source=connection.source,
                filter="http" if connection.http else "network",
            )
