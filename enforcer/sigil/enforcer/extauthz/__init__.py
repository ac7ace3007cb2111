"""``sigil-enforcer ext-authz``: Sigil policy decided for Envoy, through its external authorization filters.

Most meshes and gateways enforce with Envoy; with this server, Envoy's network (TCP) or HTTP ``ext_authz`` filter
asks Sigil about each connection or request and gets the same answer the proxy would give. From the command line
down::

    command.py   the subcommand's flags; builds the settings once and runs the server
    settings.py  ExtAuthzSettings: the flags and environment checked and typed, frozen
    server.py    one process: policies, the authorizer, the grpclib server, metrics, signals
    service.py   AuthorizationService: Authorization/Check, and the fail-closed refusals
    check.py     CheckRequest -> the connection to decide; a decision -> CheckResponse

The service and the server load on first use (PEP 562): declaring the subcommand's flags must not import grpclib.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sigil.enforcer.extauthz.settings import ExtAuthzSettings, parse_listen
from sigil.kit.lazy import lazy_exports

if TYPE_CHECKING:
    from sigil.enforcer.extauthz.check import Connection, read_check
    from sigil.enforcer.extauthz.server import serve
    from sigil.enforcer.extauthz.service import CHECK_PATH, AuthorizationService

__all__ = [
    "CHECK_PATH",
    "AuthorizationService",
    "Connection",
    "ExtAuthzSettings",
    "parse_listen",
    "read_check",
    "serve",
]

_LAZY = {
    "CHECK_PATH": "sigil.enforcer.extauthz.service",
    "AuthorizationService": "sigil.enforcer.extauthz.service",
    "Connection": "sigil.enforcer.extauthz.check",
    "read_check": "sigil.enforcer.extauthz.check",
    "serve": "sigil.enforcer.extauthz.server",
}


__getattr__ = lazy_exports(__name__, _LAZY)
