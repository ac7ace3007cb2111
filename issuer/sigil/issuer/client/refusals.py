"""What a refusal from the issuer means to the caller: its ``reason``, and whether asking again later helps.

The issuer answers every refusal with a stable ``reason`` (:mod:`sigil.issuer.errors`, RFC 9457 problems), and the
client raises it as the issuer's own error class. A caller that keeps state, the node agent above all, has to sort
those reasons into a few bins, and the bins are part of the issuer's contract, not of each caller: so they are
decided here, next to the code that turns problems back into errors, and a caller asks :meth:`Refusal.of` rather
than matching reason strings itself.

- transient: the issuer is busy or cannot reach Kubernetes or its database (``unavailable``,
  ``kubernetes_unavailable``, ``datastore_unavailable``,
  ``key_store_unavailable``, ``rate_limited``, ``internal_error``); the same request may succeed later;
- about the workload: it is entitled to nothing now (``not_entitled``, or its pod gone, replaced or on another
  node); the agent tells the workload ``PermissionDenied``;
- about the agent's own SVID: every later call with it is refused too (evicted, superseded by a copy's renewal,
  its node gone, its authority left the bundle, banned); only a fresh attestation helps, and after a ban not even
  that (:data:`AGENT_BANNED`);
- anything else is a refusal of the request itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from sigil.issuer.errors import IssuerError

__all__ = ["AGENT_BANNED", "Refusal"]

#: The reason that refuses the agent and its attestations alike, until an operator unbans it.
AGENT_BANNED = "agent_banned"

_TRANSIENT = frozenset(
    {
        "unavailable",
        "kubernetes_unavailable",
        "datastore_unavailable",
        "key_store_unavailable",
        "rate_limited",
        "internal_error",
    }
)
_WORKLOAD = frozenset({"not_entitled", "pod_not_found", "pod_uid_mismatch", "pod_on_other_node"})
_AGENT = frozenset(
    {
        "agent_not_attested",
        "agent_svid_superseded",
        "agent_node_gone",
        "agent_svid_invalid",
        AGENT_BANNED,
    }
)


@dataclass(frozen=True, slots=True)
class Refusal:
    """One refusal by the issuer: its stable ``reason``, the server's ``detail``, and which bin it falls in."""

    reason: str
    detail: str
    #: The serial number of the agent SVID the refused request presented (None: none, or not known).
    presented_serial: int | None = None

    @classmethod
    def of(cls, err: BaseException) -> Refusal | None:
        """The refusal ``err`` carries, or None when the issuer did not answer with one (a transport failure)."""
        if not isinstance(err, IssuerError):
            return None
        return cls(err.reason, err.detail, err.presented_serial)

    @property
    def transient(self) -> bool:
        """True when the same request may succeed later: "not now", never "no"."""
        return self.reason in _TRANSIENT

    @property
    def refuses_workload(self) -> bool:
        """True when the workload asked for is entitled to nothing (now)."""
        return self.reason in _WORKLOAD

    @property
    def refuses_agent(self) -> bool:
        """True when the agent's own SVID is no longer accepted: only a fresh attestation helps."""
        return self.reason in _AGENT

    @property
    def banned(self) -> bool:
        """True when the agent is banned: attesting again is refused too, until an operator lifts the ban."""
        return self.reason == AGENT_BANNED
