"""Envoy bootstraps that take their certificates only from the agent's SDS, as an operator would write them.

Two roles: a server-side Envoy terminating mTLS in front of a local HTTP server (it forwards the caller's certificate
in ``x-forwarded-client-cert``, so the backend sees what the caller presented), and a caller-side Envoy that takes
plain HTTP on loopback and opens mTLS to the server. Both ask the agent's socket for ``default`` and ``ROOTCA``; the
agent answers ``ROOTCA`` with Envoy's SPIFFE certificate validator. Used by the SDS tests and by the rotation
measurement in ``bench/_envoy_rotation.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import unquote

from cryptography import x509

__all__ = [
    "caller_bootstrap",
    "client_certificate_of",
    "sds_cluster",
    "sds_secret",
    "server_bootstrap",
]

_SDS_CLUSTER = "sigil_agent"
_HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_HTTP2 = {
    _HTTP_OPTIONS: {
        "@type": f"type.googleapis.com/{_HTTP_OPTIONS}",
        "explicit_http_config": {"http2_protocol_options": {}},
    }
}


def sds_cluster(socket_path: Path) -> dict[str, Any]:
    """The cluster that reaches the agent: a Unix socket (``pipe``) speaking HTTP/2, as gRPC needs."""
    return {
        "name": _SDS_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": _HTTP2,
        "load_assignment": {
            "cluster_name": _SDS_CLUSTER,
            "endpoints": [
                {"lb_endpoints": [{"endpoint": {"address": {"pipe": {"path": str(socket_path)}}}}]}
            ],
        },
    }


def sds_secret(name: str) -> dict[str, Any]:
    """An SDS secret config naming ``name`` on the agent's socket."""
    return {
        "name": name,
        "sds_config": {
            "resource_api_version": "V3",
            "api_config_source": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": _SDS_CLUSTER}}],
            },
        },
    }


def _common_tls_context() -> dict[str, Any]:
    return {
        "tls_certificate_sds_secret_configs": [sds_secret("default")],
        "validation_context_sds_secret_config": sds_secret("ROOTCA"),
    }


def _static(address: str, port: int) -> dict[str, Any]:
    return {
        "endpoints": [
            {
                "lb_endpoints": [
                    {
                        "endpoint": {
                            "address": {"socket_address": {"address": address, "port_value": port}}
                        }
                    }
                ]
            }
        ]
    }


def _http_listener(
    name: str, port: int, cluster: str, *, transport_socket: dict[str, Any] | None = None
) -> dict[str, Any]:
    manager: dict[str, Any] = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
        ".HttpConnectionManager",
        "stat_prefix": name,
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "all",
                    "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"}, "route": {"cluster": cluster}}],
                }
            ]
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            }
        ],
    }
    if transport_socket is not None:
        # The backend sees the caller's certificate as Envoy verified it.
        manager["forward_client_cert_details"] = "SANITIZE_SET"
        manager["set_current_client_cert_details"] = {"uri": True, "cert": True}
    chain: dict[str, Any] = {
        "filters": [
            {"name": "envoy.filters.network.http_connection_manager", "typed_config": manager}
        ]
    }
    if transport_socket is not None:
        chain["transport_socket"] = transport_socket
    return {
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [chain],
    }


def server_bootstrap(*, agent_socket: Path, port: int, backend_port: int) -> dict[str, Any]:
    """An Envoy on ``port`` requiring SPIFFE mTLS and proxying HTTP to ``127.0.0.1:backend_port``."""
    tls = {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "require_client_certificate": True,
            "common_tls_context": _common_tls_context(),
        },
    }
    return {
        "node": {"id": "server", "cluster": "server"},
        "static_resources": {
            "listeners": [_http_listener("inbound", port, "backend", transport_socket=tls)],
            "clusters": [
                sds_cluster(agent_socket),
                {
                    "name": "backend",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "load_assignment": {
                        "cluster_name": "backend",
                        **_static("127.0.0.1", backend_port),
                    },
                },
            ],
        },
    }


def caller_bootstrap(*, agent_socket: Path, port: int, server_port: int) -> dict[str, Any]:
    """An Envoy taking plain HTTP on ``port`` and calling ``127.0.0.1:server_port`` over SPIFFE mTLS."""
    tls = {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "common_tls_context": _common_tls_context(),
        },
    }
    return {
        "node": {"id": "caller", "cluster": "caller"},
        "static_resources": {
            "listeners": [_http_listener("outbound", port, "server")],
            "clusters": [
                sds_cluster(agent_socket),
                {
                    "name": "server",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "transport_socket": tls,
                    # A fresh upstream connection (and handshake) per request: each one shows the current SVID.
                    "typed_extension_protocol_options": {
                        _HTTP_OPTIONS: {
                            "@type": f"type.googleapis.com/{_HTTP_OPTIONS}",
                            "common_http_protocol_options": {"max_requests_per_connection": 1},
                            "explicit_http_config": {"http_protocol_options": {}},
                        }
                    },
                    "load_assignment": {
                        "cluster_name": "server",
                        **_static("127.0.0.1", server_port),
                    },
                },
            ],
        },
    }


def client_certificate_of(xfcc: str) -> x509.Certificate:
    """The certificate in an ``x-forwarded-client-cert`` value (``Cert="<url-encoded PEM>"``)."""
    for field in xfcc.split(";"):
        key, _, value = field.partition("=")
        if key == "Cert":
            return x509.load_pem_x509_certificate(unquote(value.strip('"')).encode())
    raise AssertionError(f"no Cert in x-forwarded-client-cert: {xfcc!r}")
