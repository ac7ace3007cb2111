"""The issuer's tables in the CA's database, on an Alembic branch of their own (``migrations/``).

- ``registry``: registration entries and join tokens;
- ``agentrecords``: attested agents, their current and newly issued SVID serials, and bans.

A database failure leaves these modules as :class:`~sigil.issuer.errors.DatastoreUnavailableError`, never as a
driver's exception, so the HTTP edge answers it like any other refusal.
"""

from __future__ import annotations

__all__: list[str] = []
