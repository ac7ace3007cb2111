"""``sigil-enforcer ext-authz``: its arguments and its run, kept apart so that ``cli.py`` only lists it.

The flags that say which pod is decided and how are those of ``proxy inbound``, with the same names and meaning.
Settings are checked and typed once into an :class:`ExtAuthzSettings`; the process configures structlog once
(JSON lines on stderr) and serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from sigil.enforcer.extauthz.settings import ExtAuthzSettings, parse_listen
from sigil.enforcer.flags import (
    ENDPOINT_SOCKET_VARIABLE,
    TRUST_DOMAIN_VARIABLE,
    add_decision_arguments,
    add_policy_source_arguments,
    add_translation_arguments,
    port_argument,
)
from sigil.enforcer.proxy.settings import Address, address_argument
from sigil.kit import configure_logging

__all__ = ["add_ext_authz_command", "run_ext_authz"]


def add_ext_authz_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare ``ext-authz`` and its arguments."""
    command = commands.add_parser(
        "ext-authz",
        help="serve Envoy's external authorization (network and HTTP ext_authz filters)",
        description=(
            "Serve envoy.service.auth.v3.Authorization/Check on --listen: the peer's SPIFFE ID from what "
            "Envoy sends (source.principal, or source.certificate with include_peer_certificate), the "
            "destination port, decided against --policies (or the node agent's, with "
            "--policies-from-agent) for the pod given by --namespace and --labels. Denials say which tier, "
            "policy and rule decided; every call before a policy set is in force is denied."
        ),
    )
    command.add_argument(
        "--listen", required=True, type=_listen, metavar="unix:///PATH|[HOST:]PORT"
    )
    add_policy_source_arguments(command, agent_default=f"env {ENDPOINT_SOCKET_VARIABLE}")
    add_translation_arguments(command)
    command.add_argument("--namespace", required=True, metavar="NS", help="this pod's namespace")
    command.add_argument("--labels", default="", metavar="K=V,...", help="this pod's labels")
    command.add_argument("--namespace-labels", default="", metavar="K=V,...")
    command.add_argument(
        "--port",
        type=port_argument,
        metavar="N",
        help="the port policies see (default: Envoy's destination)",
    )
    command.add_argument(
        "--trust-domain",
        metavar="TD",
        help=f"the local trust domain, which ServiceAccount sources name (env {TRUST_DOMAIN_VARIABLE})",
    )
    command.add_argument(
        "--federated-trust-domain",
        dest="federated",
        action="append",
        default=[],
        metavar="TD",
        help="a federated domain Envoy accepts peers of; peers of unnamed domains are denied (repeatable)",
    )
    add_decision_arguments(command)
    command.add_argument("--watch-interval", type=float, default=2.0, metavar="SECONDS")
    command.add_argument(
        "--metrics", type=address_argument, metavar="HOST:PORT", help="serve /metrics"
    )
    command.set_defaults(run=run_ext_authz)


def run_ext_authz(args: argparse.Namespace) -> int:
    """Run the server until SIGTERM/SIGINT; 0 after a clean stop."""
    settings = ExtAuthzSettings.from_args(args)
    configure_logging("info", json=True)
    # Imported here: the running server needs grpclib, aiohttp and prometheus_client, which ``check`` does not.
    from sigil.enforcer.extauthz.server import serve

    return asyncio.run(serve(settings))


def _listen(text: str) -> Address | Path:
    try:
        return parse_listen(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not unix:///PATH or [HOST:]PORT ({err})"
        ) from err
