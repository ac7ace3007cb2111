"""``sigil-enforcer proxy``: its arguments and its run, kept apart so that ``cli.py`` only lists it.

Settings come from flags, with the SPIFFE convention's environment variable (``SPIFFE_ENDPOINT_SOCKET``) and
``SIGIL_TRUST_DOMAIN`` as fallbacks, checked and typed once into a :class:`ProxySettings`; the process configures
structlog once (JSON lines on stderr), serves until SIGTERM or SIGINT, then drains.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from sigil.enforcer.flags import (
    ENDPOINT_SOCKET_VARIABLE,
    TRUST_DOMAIN_VARIABLE,
    add_decision_arguments,
    add_policy_source_arguments,
    add_translation_arguments,
    port_argument,
)
from sigil.enforcer.proxy.settings import ProxySettings, address_argument
from sigil.kit import configure_logging

__all__ = ["add_proxy_command", "run_proxy"]


def add_proxy_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare ``proxy`` and its arguments."""
    proxy = commands.add_parser(
        "proxy",
        help="an mTLS proxy: inbound (verify, decide, forward) or outbound (originate mTLS)",
        description=(
            "inbound: terminate mTLS on --listen, verify the peer's SVID, decide against --policies "
            "(or the node agent's, with --policies-from-agent), "
            "forward allowed connections to --forward. outbound: accept plain TCP on --listen and "
            "originate mTLS to --upstream as the workload's SVID."
        ),
    )
    proxy.add_argument("mode", choices=("inbound", "outbound"))
    proxy.add_argument("--listen", required=True, type=address_argument, metavar="HOST:PORT")
    proxy.add_argument(
        "--forward", type=address_argument, metavar="[HOST:]PORT", help="inbound: the app"
    )
    proxy.add_argument(
        "--upstream", type=address_argument, metavar="HOST:PORT", help="outbound: the mTLS server"
    )
    identity = proxy.add_argument_group("identity (the Workload API unless --svid-dir)")
    identity.add_argument(
        "--workload-api",
        metavar="unix:///PATH",
        help=f"the Workload API socket (env {ENDPOINT_SOCKET_VARIABLE})",
    )
    identity.add_argument(
        "--svid-dir", type=Path, metavar="DIR", help="svid.pem, key.pem and bundle.pem instead"
    )
    identity.add_argument(
        "--federated",
        action="append",
        default=[],
        metavar="TD=FILE",
        help="with --svid-dir: a federated domain's bundle (PEM); repeatable",
    )
    policy = proxy.add_argument_group("inbound policy")
    add_policy_source_arguments(policy, agent_default="--workload-api's socket")
    add_translation_arguments(policy)
    policy.add_argument("--namespace", metavar="NS", help="this pod's namespace")
    policy.add_argument("--labels", default="", metavar="K=V,...", help="this pod's labels")
    policy.add_argument("--namespace-labels", default="", metavar="K=V,...")
    policy.add_argument(
        "--port", type=port_argument, metavar="N", help="the port policies see (--listen's)"
    )
    policy.add_argument(
        "--trust-domain",
        metavar="TD",
        help=f"the local trust domain (default: the workload's own; env {TRUST_DOMAIN_VARIABLE})",
    )
    add_decision_arguments(policy)
    policy.add_argument(
        "--probe-path",
        action="append",
        default=[],
        metavar="PATH",
        help="inbound: answer a plaintext 'GET PATH HTTP/1.x' (a kubelet probe) from the app; repeatable; "
        "nothing else is accepted without mTLS",
    )
    policy.add_argument("--watch-interval", type=float, default=2.0, metavar="SECONDS")
    outbound = proxy.add_argument_group(
        "outbound server identity",
        "which upstream SVID is accepted; with neither flag, any ID of the proxy's own trust domain "
        "(that of its own SVID), never a federated domain's",
    )
    expect = outbound.add_mutually_exclusive_group()
    expect.add_argument("--expect-id", metavar="SPIFFE_ID", help="accept only this server")
    expect.add_argument(
        "--expect-trust-domain",
        metavar="TD",
        help="accept any server of TD (a federated domain only when named here)",
    )
    proxy.add_argument(
        "--metrics", type=address_argument, metavar="HOST:PORT", help="serve /metrics"
    )
    proxy.add_argument("--drain", type=float, default=10.0, metavar="SECONDS")
    proxy.set_defaults(run=run_proxy)


def run_proxy(args: argparse.Namespace) -> int:
    """Run the proxy until SIGTERM/SIGINT; 0 after a clean drain."""
    settings = ProxySettings.from_args(args)
    configure_logging("info", json=True)
    # Imported here: the running proxy needs gRPC, aiohttp and prometheus_client, which ``check`` does not.
    from sigil.enforcer.proxy.server import serve

    return asyncio.run(serve(settings))
