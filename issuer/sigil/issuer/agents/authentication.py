"""Who is calling an agent endpoint, decided afresh on every request.

OpenSSL verified the client certificate when the connection was made, against the anchors and the time of that
moment. A connection kept alive for an hour, or a TLS session resumed from before a revocation, would carry that
verdict past the certificate's life, so every agent request checks again:

1. the presented chain against the CA's bundle *now* and the issuer's clock *now*
   (:class:`~sigil.enforcer.verify.SvidVerifier`: X509-SVID.md §4-5, so expiry and a revoked authority refuse);
2. SPIFFE's part: our trust domain and an agent's path (a workload SVID of this CA must not act as an agent);
3. the attested-agent record (:mod:`sigil.issuer.datastore.agentrecords`): the agent is not evicted or banned, and the
   certificate is its current SVID or the one just issued, which then becomes current (SPIRE's rule).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sigil.ca.bundle import TrustBundle
from sigil.ca.reserved_ids import is_agent_id, k8s_agent_node
from sigil.ca.service import CertificateAuthority
from sigil.ca.spiffe_id import SpiffeId
from sigil.enforcer.bundles import BundleSet
from sigil.enforcer.errors import SvidVerificationError
from sigil.enforcer.tls import peer_chain
from sigil.enforcer.verify import SvidVerifier, VerifiedSvid
from sigil.issuer.datastore.agentrecords import AgentRecords, AttestedAgent
from sigil.issuer.errors import (
    AgentBannedError,
    AgentNotAttestedError,
    AgentSvidInvalidError,
    AgentSvidSupersededError,
    ClientCertificateRequiredError,
)

__all__ = ["AgentAuthenticator", "CallingAgent"]

#: Every agent ID sits under this path (``/sigil/agent/k8s/...``, ``/sigil/agent/join/...``).


@dataclass(frozen=True, slots=True)
class CallingAgent:
    """An agent whose SVID passed every check of this request: its ID, the SVID's serial, and its record."""

    spiffe_id: SpiffeId
    serial: str
    record: AttestedAgent

    @property
    def k8s_node(self) -> tuple[str, str] | None:
        """The ``(cluster, node)`` of a Kubernetes agent, read from its ID; None for a join-token agent."""
        return k8s_agent_node(self.spiffe_id)


class AgentAuthenticator:
    """The three checks of the module docstring over one CA, its agent records and the issuer's clock."""

    def __init__(
        self,
        ca: CertificateAuthority,
        records: AgentRecords,
        *,
        clock: Callable[[], datetime],
    ) -> None:
        self._ca = ca
        self._records = records
        self._clock = clock
        self._bundle: TrustBundle | None = None
        self._verifier = SvidVerifier(BundleSet(), clock=clock)

    def verified_peer(self, ssl_object: ssl.SSLObject | None) -> VerifiedSvid:
        """The peer's agent SVID verified against the current bundle and clock, or 401."""
        if ssl_object is None:
            raise ClientCertificateRequiredError("the connection is not TLS")
        leaf = ssl_object.getpeercert(binary_form=True)
        if not leaf:
            # Asked first: Python 3.11's private chain accessor yields [None] for a peer without a certificate.
            raise ClientCertificateRequiredError("no client certificate with a SPIFFE ID")
        # A resumed session keeps the peer's leaf but not its chain; the leaf alone then verifies only when the
        # bundle's authority signed it directly, which refuses rather than accepts anything more.
        chain = peer_chain(ssl_object) or [leaf]
        bundle = self._ca.bundle()
        if bundle is not self._bundle:
            # A new snapshot (rotation, taint, revocation, another replica's change): verify against it from now.
            self._verifier.set_bundles(BundleSet.of(bundle))
            self._bundle = bundle
        try:
            verified = self._verifier.verify(chain)
        except SvidVerificationError as err:
            raise AgentSvidInvalidError(str(err)) from err
        found = verified.spiffe_id
        if found.trust_domain != self._ca.settings.trust_domain:
            raise ClientCertificateRequiredError(f"{found} is not in this trust domain")
        if not is_agent_id(found):
            raise ClientCertificateRequiredError(f"{found} is not an agent ID")
        return verified

    async def authenticate(self, verified: VerifiedSvid) -> CallingAgent:
        """The calling agent once its record says this SVID is live; promotes a newly issued SVID to current."""
        agent = str(verified.spiffe_id)
        serial = format(verified.chain[0].serial_number, "032x")
        record = await self._records.get(agent)
        if record is None:
            raise AgentNotAttestedError(agent)
        if record.banned:
            raise AgentBannedError(agent)
        if not record.holds(serial):
            raise AgentSvidSupersededError(agent, serial)
        if serial == record.new_serial:
            # First use of the renewed SVID: it becomes current and the old one (and any copy of it) is retired.
            await self._records.promote(agent, serial, now=self._clock())
            record = await self._records.get(agent)
            if record is None or record.banned or record.serial != serial:
                # Evicted, banned or re-attested in between: refuse rather than guess.
                raise AgentSvidSupersededError(agent, serial)
        return CallingAgent(verified.spiffe_id, serial, record)
