"""The issuer's HTTP handlers, one module per area; each exposes ``routes`` for the app to add."""

from __future__ import annotations

__all__: list[str] = []
