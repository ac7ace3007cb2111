"""``sigil-agent api fetch`` and ``sigil-agent api watch``: the agent's command line for workloads.

They talk to a running agent as a workload would (py-spiffe's client, so they import grpcio), which is why they
live apart from :mod:`sigil.node_agent.cli` and import their clients only when run: starting the agent itself never
loads them.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sigil.node_agent.watch import WatchRequest

__all__ = ["add_api_commands", "run_api_command"]


def add_api_commands(commands: Any) -> None:
    """Add ``api fetch`` and ``api watch`` to the agent's subcommands (argparse's subparsers action)."""
    api = commands.add_parser("api", help="talk to a running agent as a workload would")
    api_commands = api.add_subparsers(dest="api_command", required=True)
    fetch_parser = api_commands.add_parser(
        "fetch", help="fetch SVIDs or bundles (as spire-agent api fetch)"
    )
    fetch_parser.add_argument("kind", nargs="?", choices=["x509", "jwt", "bundle"], default="x509")
    fetch_parser.add_argument(
        "--socket", help="socket path or unix:// URI (default: $SPIFFE_ENDPOINT_SOCKET)"
    )
    fetch_parser.add_argument(
        "--audience", action="append", default=[], help="JWT audience; repeat for several"
    )
    fetch_parser.add_argument("--spiffe-id", help="with jwt: the SPIFFE ID to get a token for")
    fetch_parser.add_argument("--write", type=Path, help="write the files to this directory")
    fetch_parser.add_argument("--output", choices=["text", "json"], default="text")
    fetch_parser.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")

    watch_parser = api_commands.add_parser(
        "watch",
        help="keep svid.pem, svid.key and bundle.pem current in a directory (as spiffe-helper)",
    )
    watch_parser.add_argument(
        "--socket", help="socket path or unix:// URI (default: $SPIFFE_ENDPOINT_SOCKET)"
    )
    watch_parser.add_argument(
        "--write", type=Path, required=True, metavar="DIR", help="directory to keep the files in"
    )
    watch_parser.add_argument("--signal", help="after each update, send this signal (HUP, USR1...)")
    watch_parser.add_argument(
        "--pid-file", type=Path, help="with --signal: file whose first line is the PID to signal"
    )
    watch_parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds to wait for a first SVID (default 10)"
    )
    watch_parser.add_argument(
        "--exec",
        dest="exec_command",
        nargs=argparse.REMAINDER,
        metavar="CMD",
        help="after each update, run CMD with its arguments (everything after --exec)",
    )


def run_api_command(args: argparse.Namespace) -> int:
    """Run the ``api`` subcommand ``args`` names; the exit status."""
    if args.api_command == "watch":
        return _api_watch(args)
    return _api_fetch(args)


def _api_fetch(args: argparse.Namespace) -> int:
    # Imported here: py-spiffe brings grpcio, which the agent itself (grpclib) never needs to serve.
    from spiffe.errors import PySpiffeError

    from sigil.node_agent.fetch import FetchRequest, fetch

    if args.kind == "jwt" and not args.audience:
        print("error: jwt needs at least one --audience", file=sys.stderr)
        return 2
    request = FetchRequest(
        kind=args.kind,
        socket=args.socket,
        audiences=tuple(args.audience),
        spiffe_id=args.spiffe_id,
        write=args.write,
        output=args.output,
        timeout=args.timeout,
    )
    try:
        return fetch(request, sys.stdout)
    except (PySpiffeError, OSError) as err:
        # The agent refused (PERMISSION_DENIED, UNAVAILABLE), is not there, or a file could not be written.
        print(f"error: {err}", file=sys.stderr)
        return 1


async def _watch_until_signal(request: WatchRequest) -> int:
    from sigil.node_agent.watch import watch

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGTERM, signal.SIGINT)
    for number in signals:
        loop.add_signal_handler(number, stop.set)
    try:
        await watch(request, stop=stop)
    finally:
        for number in signals:
            loop.remove_signal_handler(number)
    print("sigil-agent: watch stopped", file=sys.stderr, flush=True)
    return 0


def _api_watch(args: argparse.Namespace) -> int:
    # Imported here, like api fetch's client: py-spiffe and grpcio are the workload side's, not the agent's.
    from sigil.node_agent.fetch import endpoint_of
    from sigil.node_agent.watch import WatchRequest, parse_signal

    if args.exec_command is not None and not args.exec_command:
        print("error: --exec needs a command to run", file=sys.stderr)
        return 2
    try:
        request = WatchRequest(
            directory=args.write,
            socket=endpoint_of(args.socket),
            command=tuple(args.exec_command or ()),
            signal=parse_signal(args.signal) if args.signal is not None else None,
            pid_file=args.pid_file,
            timeout=args.timeout,
        )
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from sigil.kit import configure_logging

    configure_logging("info")
    try:
        return asyncio.run(_watch_until_signal(request))
    except OSError as err:
        # The directory or a file in it could not be written.
        print(f"error: {err}", file=sys.stderr)
        return 1
