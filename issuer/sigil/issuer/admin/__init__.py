"""The admin verbs behind one interface, served on the local Unix socket and run in-process when no server runs."""

from __future__ import annotations

from sigil.issuer.admin.backend import AdminBackend, LocalAdmin
from sigil.issuer.admin.client import SocketAdmin, server_listening

__all__ = ["AdminBackend", "LocalAdmin", "SocketAdmin", "server_listening"]
