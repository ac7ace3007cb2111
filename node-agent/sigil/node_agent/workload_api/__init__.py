"""The Workload API endpoint: the agent's Unix socket and the SPIFFE Workload API served on it.

- ``endpoint``: :class:`WorkloadApiServer`, the socket, its lifecycle and the routes of each accepted connection;
- ``service``: :class:`WorkloadApiService`, the five RPCs of the standard over an ``IdentitySource``;
- ``sds``: :class:`SdsService`, Envoy's Secret Discovery Service on the same socket (``sds_secrets``: its names),
  whose Envoy messages are imported at the first SDS call (the names of ``sds_secrets`` are read through this
  package on first use, for the same reason);
- ``_accept_hook``: the one place that reaches into grpclib to capture credentials at accept.

The endpoint asks an :class:`~sigil.node_agent.identity_source.IdentitySource` for everything it serves and never
imports the SVID cache that provides it in production (import-linter), so it is tested with an in-memory source.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sigil.kit.lazy import lazy_exports
from sigil.node_agent.workload_api.endpoint import (
    DEFAULT_SOCKET_PATH,
    WorkloadApiServer,
    WorkloadApiSettings,
)
from sigil.node_agent.workload_api.sds import SDS_SERVICE_NAME, SdsService
from sigil.node_agent.workload_api.service import SERVICE_NAME, WorkloadApiService

if TYPE_CHECKING:
    from sigil.node_agent.workload_api.sds_secrets import (
        ALL_BUNDLES,
        DEFAULT_BUNDLE,
        DEFAULT_SVID,
        SECRET_TYPE_URL,
        SPIFFE_VALIDATOR,
        build_secrets,
        supports_spiffe_validator,
    )

__all__ = [
    "ALL_BUNDLES",
    "DEFAULT_BUNDLE",
    "DEFAULT_SOCKET_PATH",
    "DEFAULT_SVID",
    "SDS_SERVICE_NAME",
    "SECRET_TYPE_URL",
    "SERVICE_NAME",
    "SPIFFE_VALIDATOR",
    "SdsService",
    "WorkloadApiServer",
    "WorkloadApiService",
    "WorkloadApiSettings",
    "build_secrets",
    "supports_spiffe_validator",
]

_SDS_SECRETS = "sigil.node_agent.workload_api.sds_secrets"
_LAZY = {
    "ALL_BUNDLES": _SDS_SECRETS,
    "DEFAULT_BUNDLE": _SDS_SECRETS,
    "DEFAULT_SVID": _SDS_SECRETS,
    "SECRET_TYPE_URL": _SDS_SECRETS,
    "SPIFFE_VALIDATOR": _SDS_SECRETS,
    "build_secrets": _SDS_SECRETS,
    "supports_spiffe_validator": _SDS_SECRETS,
}

__getattr__ = lazy_exports(__name__, _LAZY)
