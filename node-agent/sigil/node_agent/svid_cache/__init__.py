"""The SVID cache: what the agent holds for each attested workload, and the work of keeping it current.

- ``cache``: :class:`SvidCache`, the agent's :class:`~sigil.node_agent.identity_source.IdentitySource` and the
  owner of the parts below;
- ``workload``: one workload's slot (key, SVIDs, rotation point) and its cache key;
- ``workload_table``: the slots, who streams, and the heap of moments at which each falls due;
- ``scheduler``: the one task that does what falls due (rotate, drop, renew the agent SVID);
- ``issuance``: first issuance and rotation, over ``batcher``'s coalesced requests;
- ``jwt_cache``: JWT-SVIDs per (SPIFFE ID, audiences), refreshed past half-life.

It reaches the issuer through ``sigil.node_agent.upstream`` and never imports the Workload API endpoint.
"""

from __future__ import annotations

from sigil.node_agent.svid_cache.batcher import MAX_BATCH, IssueBatch, X509Batcher
from sigil.node_agent.svid_cache.cache import SvidCache
from sigil.node_agent.svid_cache.issuance import X509Issuance
from sigil.node_agent.svid_cache.jwt_cache import JwtSvidCache
from sigil.node_agent.svid_cache.scheduler import Scheduler
from sigil.node_agent.svid_cache.workload import (
    CachedJwt,
    CachedSvid,
    Workload,
    WorkloadKey,
    cached_svid,
    key_of,
    new_keys,
    workload_of,
)
from sigil.node_agent.svid_cache.workload_table import DueQueue, WorkloadTable

__all__ = [
    "MAX_BATCH",
    "CachedJwt",
    "CachedSvid",
    "DueQueue",
    "IssueBatch",
    "JwtSvidCache",
    "Scheduler",
    "SvidCache",
    "Workload",
    "WorkloadKey",
    "WorkloadTable",
    "X509Batcher",
    "X509Issuance",
    "cached_svid",
    "key_of",
    "new_keys",
    "workload_of",
]
