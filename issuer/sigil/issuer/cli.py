"""``sigil-server``: the issuance server (``run``) and its admin verbs.

The admin verbs (``authority``, ``bundle``, ``x509``, ``jwt``, ``entry``, ``token``, ``policy``, ``agent``) go to
the running server's admin socket when a server listens there, so their effects reach agents at once; with no server
they work directly on the datastore (``healthcheck`` asks the running server only). The first use of the embedded
default (no ``--config``) initialises a local trust domain under ``$SIGIL_DATA_DIR`` (``./.sigil``). This module holds what every verb shares (global flags, settings, the
choice of backend, errors); the verbs themselves are in :mod:`sigil.issuer.verbs`, one module per area.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

from sigil.ca.errors import SigilError
from sigil.issuer.admin import LocalAdmin, SocketAdmin, server_listening
from sigil.issuer.datastore.registry import Registry
from sigil.issuer.edge.assembly import open_ca
from sigil.issuer.edge.listeners import run_server
from sigil.issuer.settings import ServerSettings, load_server_settings
from sigil.issuer.verbs import (
    Command,
    add_agent_verbs,
    add_authority_verbs,
    add_policy_verbs,
    add_registration_verbs,
    add_upstream_verbs,
    healthcheck,
)
from sigil.kit import configure_logging

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sigil-server", description="Sigil issuance server and admin verbs."
    )
    parser.add_argument("--config", type=Path, help="YAML configuration file")
    parser.add_argument(
        "--data-dir", help="state directory of the embedded default (env SIGIL_DATA_DIR)"
    )
    parser.add_argument("--trust-domain", help="trust domain name (env SIGIL_TRUST_DOMAIN)")
    parser.add_argument(
        "--database-url",
        help="SQLAlchemy URL, e.g. postgresql+asyncpg://... (env SIGIL_DATABASE_URL)",
    )
    parser.add_argument(
        "--admin-socket",
        help="the server's admin socket (env SIGIL_ADMIN_SOCKET; default DATA_DIR/admin.sock)",
    )
    parser.add_argument("--listen", help="run: HOST:PORT of the main listener (env SIGIL_LISTEN)")
    parser.add_argument("--kubeconfig", help="run: kubeconfig file (env SIGIL_KUBECONFIG)")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the issuance server")
    run.add_argument(
        "--signing-workers",
        type=int,
        help="processes that verify CSRs and sign SVIDs; 1 signs in the server's own process "
        "(env SIGIL_SIGNING_WORKERS; config ca.signing_workers; default 1)",
    )
    run.set_defaults(run=None)
    add_authority_verbs(commands)
    add_upstream_verbs(commands)
    add_registration_verbs(commands)
    add_policy_verbs(commands)
    add_agent_verbs(commands)
    return parser


async def _run(settings: ServerSettings, command: Command, args: argparse.Namespace) -> int:
    """Through the running server's admin socket when one listens there, else on the datastore directly."""
    if await asyncio.to_thread(server_listening, settings.admin_socket):
        async with SocketAdmin(settings.admin_socket) as remote:
            return await command(remote, args)
    # A verb signs at most a few certificates: worker processes would only slow its start.
    ca = await open_ca(
        dataclasses.replace(settings, ca=dataclasses.replace(settings.ca, signing_workers=1))
    )
    try:
        return await command(LocalAdmin(ca, Registry(ca.store.engine)), args)
    finally:
        await ca.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = load_server_settings(
            args.config,
            data_dir=args.data_dir,
            trust_domain=args.trust_domain,
            database_url=args.database_url,
            listen=args.listen,
            admin_socket=args.admin_socket,
            kubeconfig=args.kubeconfig,
            signing_workers=getattr(args, "signing_workers", None),
        )
        if args.command == "healthcheck":
            return asyncio.run(healthcheck(settings.admin_socket))
        if args.run is None:
            configure_logging(settings.server.log_level)
            return asyncio.run(run_server(settings))
        return asyncio.run(_run(settings, args.run, args))
    except SigilError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
