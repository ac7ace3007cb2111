"""The issuer's HTTP edge: where requests come in and answers, refusals included, go out.

- ``assembly``: the issuer's parts built from the settings, and the three aiohttp applications that serve them;
- ``listeners``: ``sigil-server run``, the listeners started together and drained together on SIGTERM;
- ``parts``: the running issuer's parts in one typed object that handlers reach through an ``AppKey``;
- ``listener_tls``: the main listener's TLS (the server's own SVID, renewed by itself);
- ``problems``: the middleware that answers every refusal as RFC 9457 ``problem+json``;
- ``ratelimit``: per-caller token buckets;
- ``routes``: the handlers, one module per area.

Nothing below the edge (the datastore tables, the bundle feeds, agent authentication) imports it; an
import-linter contract holds that.
"""

from __future__ import annotations

__all__: list[str] = []
