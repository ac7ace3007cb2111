"""Envoy bootstraps that put ``sigil-enforcer ext-authz`` behind Envoy's ext_authz filters, and that server as a process.

Shared by the ext_authz tests and ``bench/through_envoy.py``: an mTLS listener (the server's SVID, key and bundle from
files, a plain validation context: SDS from the agent is tested on its own) whose filter chain is either the network
``ext_authz`` filter in front of ``tcp_proxy``, or an HTTP connection manager with the HTTP ``ext_authz`` filter in
front of the router; either filter can be left out, which is the benchmark's baseline. The authorization server is
reached over a Unix socket (a ``pipe`` address), as a sidecar in the same pod would reach it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "AUTHZ_CLUSTER",
    "ExtAuthzProcess",
    "SvidFiles",
    "bootstrap",
    "http_filters",
    "local_cluster",
    "network_filters",
    "running_ext_authz",
    "tls_listener",
]

AUTHZ_CLUSTER = "sigil_ext_authz"
SIGIL_ENFORCER = str(Path(sys.executable).parent / "sigil-enforcer")
_TYPES = "type.googleapis.com/envoy.extensions"


@dataclass(frozen=True)
class SvidFiles:
    """The listener's own SVID chain, its key, and the bundle that client SVIDs are verified against."""

    chain: Path
    key: Path
    bundle: Path


def _grpc_service() -> dict[str, Any]:
    return {"envoy_grpc": {"cluster_name": AUTHZ_CLUSTER}, "timeout": "5s"}


def network_filters(app_cluster: str, *, ext_authz: bool = True) -> list[dict[str, Any]]:
    """The network ``ext_authz`` filter (peer certificate included) in front of ``tcp_proxy`` to ``app_cluster``."""
    filters: list[dict[str, Any]] = []
    if ext_authz:
        filters.append(
            {
                "name": "envoy.filters.network.ext_authz",
                "typed_config": {
                    "@type": f"{_TYPES}.filters.network.ext_authz.v3.ExtAuthz",
                    "stat_prefix": "sigil",
                    "grpc_service": _grpc_service(),
                    "include_peer_certificate": True,
                    "failure_mode_allow": False,
                },
            }
        )
    filters.append(
        {
            "name": "envoy.filters.network.tcp_proxy",
            "typed_config": {
                "@type": f"{_TYPES}.filters.network.tcp_proxy.v3.TcpProxy",
                "stat_prefix": "app",
                "cluster": app_cluster,
            },
        }
    )
    return filters


def http_filters(app_cluster: str, *, ext_authz: bool = True) -> list[dict[str, Any]]:
    """An HTTP connection manager routing everything to ``app_cluster``, the HTTP ``ext_authz`` filter first."""
    chain: list[dict[str, Any]] = []
    if ext_authz:
        chain.append(
            {
                "name": "envoy.filters.http.ext_authz",
                "typed_config": {
                    "@type": f"{_TYPES}.filters.http.ext_authz.v3.ExtAuthz",
                    "grpc_service": _grpc_service(),
                    "include_peer_certificate": True,
                    "failure_mode_allow": False,
                    "transport_api_version": "V3",
                },
            }
        )
    chain.append(
        {
            "name": "envoy.filters.http.router",
            "typed_config": {"@type": f"{_TYPES}.filters.http.router.v3.Router"},
        }
    )
    return [
        {
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": f"{_TYPES}.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": "ingress",
                "route_config": {
                    "virtual_hosts": [
                        {
                            "name": "app",
                            "domains": ["*"],
                            "routes": [
                                {"match": {"prefix": "/"}, "route": {"cluster": app_cluster}}
                            ],
                        }
                    ]
                },
                "http_filters": chain,
            },
        }
    ]


def tls_listener(
    name: str, port: int, filters: list[dict[str, Any]], files: SvidFiles
) -> dict[str, Any]:
    """A loopback listener on ``port`` terminating mTLS (a client SVID is required) before ``filters``."""
    return {
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [
            {
                "filters": filters,
                "transport_socket": {
                    "name": "envoy.transport_sockets.tls",
                    "typed_config": {
                        "@type": f"{_TYPES}.transport_sockets.tls.v3.DownstreamTlsContext",
                        "require_client_certificate": True,
                        "common_tls_context": {
                            "tls_certificates": [
                                {
                                    "certificate_chain": {"filename": str(files.chain)},
                                    "private_key": {"filename": str(files.key)},
                                }
                            ],
                            "validation_context": {"trusted_ca": {"filename": str(files.bundle)}},
                        },
                    },
                },
            }
        ],
    }


def local_cluster(name: str, port: int) -> dict[str, Any]:
    """A cluster of one plain-TCP endpoint on loopback (the application behind Envoy)."""
    return _cluster(name, {"socket_address": {"address": "127.0.0.1", "port_value": port}})


def bootstrap(
    listeners: Sequence[dict[str, Any]],
    clusters: Sequence[dict[str, Any]],
    *,
    authz_socket: Path | None = None,
) -> dict[str, Any]:
    """A static bootstrap; with ``authz_socket``, the gRPC (HTTP/2) cluster of the authorization server."""
    every = list(clusters)
    if authz_socket is not None:
        authz = _cluster(AUTHZ_CLUSTER, {"pipe": {"path": str(authz_socket)}})
        authz["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": f"{_TYPES}.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        }
        every.append(authz)
    return {"static_resources": {"listeners": list(listeners), "clusters": every}}


def _cluster(name: str, address: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "2s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}],
        },
    }


@dataclass(frozen=True)
class ExtAuthzProcess:
    """A running ``sigil-enforcer ext-authz``: its socket and its JSON log."""

    socket: Path
    log_path: Path

    def log_text(self) -> str:
        """Everything the server logged so far."""
        return self.log_path.read_text(errors="replace")

    def events(self) -> list[dict[str, Any]]:
        """Every JSON log line written so far, parsed."""
        return [json.loads(line) for line in self.log_text().splitlines() if line.startswith("{")]


@contextlib.asynccontextmanager
async def running_ext_authz(
    socket: Path, log_path: Path, arguments: Sequence[str], *, listen: str | None = None
) -> AsyncIterator[ExtAuthzProcess]:
    """``sigil-enforcer ext-authz --listen unix://SOCKET ARGUMENTS...`` until the block ends, then SIGTERM.

    ``listen`` replaces the socket as ``--listen``'s value (a TCP address, say). Yields once the server says it
    listens; its log (stderr) goes to ``log_path``.
    """
    server = ExtAuthzProcess(socket, log_path)
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            SIGIL_ENFORCER,
            "ext-authz",
            "--listen",
            listen or f"unix://{socket}",
            *arguments,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=log,
        )
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while not any(e.get("event") == "ext_authz listening" for e in server.events()):
            if process.returncode is not None or asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"ext-authz did not start:\n{server.log_text()}")
            await asyncio.sleep(0.05)
        yield server
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()
