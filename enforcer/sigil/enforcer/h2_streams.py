"""How many closed HTTP/2 streams each connection of Sigil's gRPC servers remembers.

Every gRPC server here is grpclib on h2. h2 remembers how each closed stream of a connection was closed, so that a
frame arriving late on one can be answered with a stream error rather than a connection error; it keeps up to
``H2Connection.MAX_CLOSED_STREAMS`` of them per connection, 65,536 by default, about 100 bytes each on each side. A
connection that carries many unary calls (go-spiffe fetching JWT-SVIDs over one connection for days; Envoy's
ext_authz sending every request's Check over one) therefore grows by about 6 MB before the oldest is forgotten.
``bench/soak.py`` found it: eight Workload API connections grew the process by about 5 MB a minute at 300 calls/s.

A late frame can only arrive on a stream that was open a round trip ago, and our servers let a peer open at most
100 streams at once (h2's local ``MAX_CONCURRENT_STREAMS``); nghttp2 keeps about that many closed streams. Keeping
:data:`CLOSED_STREAMS_KEPT` (ten times that) bounds a connection's record at about 100 KB. A frame on a stream
forgotten since is treated as h2 treats a stream the peer skipped: a protocol error on the connection, which a
peer sending frames on a stream closed 1,024 streams ago has earned.

The limit is h2's class attribute, so it holds for every h2 connection of the process (our servers, and grpclib
clients in the same process); :func:`bound_closed_streams` is idempotent and is called by each server at start.
"""

from __future__ import annotations

from h2.connection import H2Connection

__all__ = ["CLOSED_STREAMS_KEPT", "bound_closed_streams"]

#: Closed streams remembered per HTTP/2 connection.
CLOSED_STREAMS_KEPT = 1024


def bound_closed_streams() -> None:
    """Make every h2 connection made from now on remember at most :data:`CLOSED_STREAMS_KEPT` closed streams."""
    H2Connection.MAX_CLOSED_STREAMS = min(H2Connection.MAX_CLOSED_STREAMS, CLOSED_STREAMS_KEPT)
