"""The policy service's contract on the agent's socket: one method path, its two messages, the header it needs.

The node agent serves ``WatchPolicies`` and the enforcer calls it; both route by hand with grpclib, so the method
path, the cardinality and the message types must be spelled the same on both sides. They are spelled here, once,
and both sides import them from here rather than from the generated code, which stays private in ``_proto`` (as
py-spiffe keeps its generated Workload API). The messages are described in ``_proto/policy.proto``.
The enforcer owns the contract because it is the client, and a library may not import the agent that serves it.
"""

from __future__ import annotations

from typing import Final

from grpclib.const import Cardinality

from sigil.enforcer._proto.policy_pb2 import PolicySnapshot, WatchPoliciesRequest

__all__ = [
    "SECURITY_HEADER",
    "WATCH_POLICIES_CARDINALITY",
    "WATCH_POLICIES_PATH",
    "PolicySnapshot",
    "WatchPoliciesRequest",
]

#: The method path (policy.proto's service, in its package ``sigil.policy.v1``).
WATCH_POLICIES_PATH: Final = "/sigil.policy.v1.PolicyService/WatchPolicies"
#: One request, then a stream of snapshots: the complete scoped set at once, again after every change.
WATCH_POLICIES_CARDINALITY: Final = Cardinality.UNARY_STREAM
#: The Workload API's header (SPIFFE_Workload_Endpoint.md, "Transport"), required here under the same rule.
SECURITY_HEADER: Final = "workload.spiffe.io"
