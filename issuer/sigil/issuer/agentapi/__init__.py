"""The agent API between ``sigil-agent`` and ``sigil-server``, shared by both sides.

- ``contract``: every path and JSON body (TypedDicts), imported by the server and by :mod:`sigil.issuer.client`;
- ``requests``: request bodies parsed on the server into frozen value objects that say what was wrong.
"""

from __future__ import annotations

__all__: list[str] = []
