"""What happens when no policy decides (authz.md part 7 step 4, and 7.1's defaults).

Linkerd's ``proxy.defaultInboundPolicy`` (``all-unauthenticated``, ``all-authenticated``,
``cluster-authenticated``, ``deny``, ``audit``) is what operators of a mesh already know, so Sigil's ``--default``
takes the same choices under its own names: ``allow``, ``authenticated`` (any peer with a verified SVID, of
the local or a federated domain), ``local-authenticated`` (the local trust domain only, Linkerd's "cluster"),
``deny``, and ``audit`` (allow, and record each connection ``deny`` would have refused).
"""

from __future__ import annotations

import enum

from sigil.ca.spiffe_id import SpiffeId, TrustDomain

__all__ = ["LINKERD_DEFAULTS", "DefaultPolicy"]


class DefaultPolicy(enum.Enum):
    """The verdict for a connection no policy decided."""

    ALLOW = "allow"
    DENY = "deny"
    AUTHENTICATED = "authenticated"
    LOCAL_AUTHENTICATED = "local-authenticated"
    AUDIT = "audit"

    @classmethod
    def of(cls, *, allow: bool) -> DefaultPolicy:
        """The plain ``allow``/``deny`` default of a boolean setting."""
        return cls.ALLOW if allow else cls.DENY

    def admits(self, peer: SpiffeId | None, local: TrustDomain) -> bool:
        """True when this default lets ``peer`` (None: no valid SVID) through."""
        if self is DefaultPolicy.DENY:
            return False
        if self is DefaultPolicy.AUTHENTICATED:
            return peer is not None
        if self is DefaultPolicy.LOCAL_AUTHENTICATED:
            return peer is not None and peer.trust_domain == local
        return True  # ALLOW, and AUDIT, which allows and records

    def reason(self, *, admitted: bool) -> str:
        """One sentence for the decision's ``reason``."""
        if self is DefaultPolicy.AUDIT:
            return "no policy decided; the default is audit: allowed, and recorded as deny would refuse it"
        if self in (DefaultPolicy.ALLOW, DefaultPolicy.DENY):
            return f"no policy decided; the configured default is {self.value}"
        who = "peers with a verified SVID" + (
            " of the local trust domain" if self is DefaultPolicy.LOCAL_AUTHENTICATED else ""
        )
        verb = "allows" if admitted else "admits only"
        return f"no policy decided; the default {self.value} {verb} {who}"


#: Linkerd's ``defaultInboundPolicy`` values and the Sigil default each maps to.
LINKERD_DEFAULTS = {
    "all-unauthenticated": DefaultPolicy.ALLOW,
    "all-authenticated": DefaultPolicy.AUTHENTICATED,
    "cluster-authenticated": DefaultPolicy.LOCAL_AUTHENTICATED,
    "deny": DefaultPolicy.DENY,
    "audit": DefaultPolicy.AUDIT,
}
