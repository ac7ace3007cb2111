"""Refusals of a known caller that is not entitled to what it asked for (HTTP 403).

The unprefixed pod errors are about a pod an agent asks an SVID for; the ``bound_*`` errors of
:mod:`~sigil.issuer.errors.authentication` are about the pod a token is bound to.
"""

from __future__ import annotations

from sigil.issuer.errors.reasons import IssuerError

__all__ = [
    "AgentBannedError",
    "AuthorizationError",
    "NotEntitledError",
    "PodNotFoundError",
    "PodOnOtherNodeError",
    "PodUidMismatchError",
    "ServiceAccountNotAllowedError",
]


class AuthorizationError(IssuerError):
    """The caller is known but is not entitled to what it asked for (HTTP 403)."""


class AgentBannedError(AuthorizationError):
    """An operator banned this agent ID: its SVIDs and its attestations are refused until it is unbanned."""

    reason = "agent_banned"

    def __init__(self, agent_id: str) -> None:
        super().__init__(f"{agent_id} is banned (sigil-server agent unban --id ...)")
        self.agent_id = agent_id


class ServiceAccountNotAllowedError(AuthorizationError):
    """The token authenticates a ServiceAccount that is not on the allow-list (for example, not a node agent)."""

    reason = "service_account_not_allowed"

    def __init__(self, namespace: str, service_account: str) -> None:
        super().__init__(f"service account {namespace}:{service_account} is not allowed")
        self.namespace = namespace
        self.service_account = service_account


class NotEntitledError(AuthorizationError):
    """The caller asked for an identity it may not hold."""

    reason = "not_entitled"

    def __init__(self, spiffe_id: str, why: str) -> None:
        super().__init__(f"not entitled to {spiffe_id}: {why}")
        self.spiffe_id = spiffe_id
        self.why = why


class PodNotFoundError(AuthorizationError):
    """An agent asked for a pod the issuer's pod cache does not hold."""

    reason = "pod_not_found"

    def __init__(self, namespace: str, pod_name: str) -> None:
        super().__init__(f"pod {namespace}/{pod_name} is not known")
        self.namespace = namespace
        self.pod_name = pod_name


class PodUidMismatchError(AuthorizationError):
    """An agent named a pod by name and UID, and the pod of that name has another UID."""

    reason = "pod_uid_mismatch"

    def __init__(self, namespace: str, pod_name: str, *, requested_uid: str, pod_uid: str) -> None:
        super().__init__(f"pod {namespace}/{pod_name} has UID {pod_uid}, not {requested_uid}")
        self.namespace = namespace
        self.pod_name = pod_name
        self.requested_uid = requested_uid
        self.pod_uid = pod_uid


class PodOnOtherNodeError(AuthorizationError):
    """An agent asked for a pod that runs on another node than its own."""

    reason = "pod_on_other_node"

    def __init__(self, namespace: str, pod_name: str, *, node_name: str, agent_node: str) -> None:
        super().__init__(
            f"pod {namespace}/{pod_name} runs on node {node_name or '(none)'!r}, not on the agent's node {agent_node!r}"
        )
        self.namespace = namespace
        self.pod_name = pod_name
        self.node_name = node_name
        self.agent_node = agent_node
