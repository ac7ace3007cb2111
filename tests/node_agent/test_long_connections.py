"""A workload that keeps one connection to the agent for many calls does not grow the agent's memory without end.

h2 remembers every closed stream of a connection, up to 65,536 by default (``sigil.enforcer.h2_streams``); a
client like go-spiffe or py-spiffe keeps one connection and opens a stream per unary call. The calls here are made
by py-spiffe over one gRPC channel; what is measured is the memory the agent's side (grpclib on h2, in this
process) allocated in h2 and kept, from just past the bound to a thousand calls later, counted in allocations (the
bytes move a little as the record's table is resized, the count does not).
"""

from __future__ import annotations

import asyncio
import tracemalloc
from pathlib import Path

from spiffe import WorkloadApiClient

from sigil.enforcer.h2_streams import CLOSED_STREAMS_KEPT
from sigil.node_agent.workload_api.endpoint import WorkloadApiServer

_H2 = [tracemalloc.Filter(True, "*/h2/*")]


def _calls(client: WorkloadApiClient, count: int) -> None:
    for _ in range(count):
        client.fetch_jwt_svid({"db"})


def _h2_blocks() -> int:
    """How many allocations made in h2 are alive now."""
    snapshot = tracemalloc.take_snapshot().filter_traces(_H2)
    return sum(stat.count for stat in snapshot.statistics("filename"))


async def test_a_thousand_more_calls_on_one_connection_keep_no_more_h2_memory(
    server: WorkloadApiServer, short_tmp: Path
) -> None:
    """Past the bound of remembered streams, 1,000 more JWT-SVID fetches on one connection keep nothing more in h2."""
    tracemalloc.start()
    try:
        with WorkloadApiClient(socket_path=server.settings.endpoint, default_timeout=10) as client:
            await asyncio.to_thread(_calls, client, CLOSED_STREAMS_KEPT + 100)
            before = _h2_blocks()
            await asyncio.to_thread(_calls, client, 1_000)
            after = _h2_blocks()
    finally:
        tracemalloc.stop()
    # Without the bound each call keeps one more (its stream's record, about 80 bytes): 1,000 here.
    assert after - before < 50, f"h2 kept {after - before} more allocations over 1,000 calls"
