"""The node agent's authorization policies: what it mirrors from the issuer, and what it serves to enforcers.

In: :mod:`.mirror` long-polls the issuer's policy feed and keeps the last set (in memory and in
``agent.data_dir/policies.json``). Out: :mod:`.service` streams to each local enforcer, on the agent's socket, the
part of that set that can apply to the caller's pod. The agent judges nothing itself: what the issuer sends was
parsed once, on arrival, by :mod:`sigil.enforcer.policy`, and each document travels on in its canonical form.
"""

from __future__ import annotations

from sigil.node_agent.policies.mirror import MirroredPolicies, PolicyMirror
from sigil.node_agent.policies.service import PolicyService

__all__ = ["MirroredPolicies", "PolicyMirror", "PolicyService"]
