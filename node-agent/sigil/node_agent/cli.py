"""``sigil-agent``: run the node agent, or ask a running one what a workload would get.

``sigil-agent run --config FILE`` builds :class:`~sigil.node_agent.settings.AgentSettings` once (flag > ``SIGIL_*``
environment > file > default), prints the socket and the ``SPIFFE_ENDPOINT_SOCKET=...`` line a workload needs, and
serves until SIGTERM or Ctrl-C, on which it drains: the socket closes, open streams end (clients reconnect to the
next agent), background tasks are cancelled and awaited. ``sigil-agent api fetch`` mirrors ``spire-agent api fetch``;
``sigil-agent api watch`` keeps a workload's SVID and bundles current in files, as spiffe-helper does (watch.py);
``sigil-agent healthcheck`` asks a running agent's ``/ready`` and answers with its exit status, for probes.

Logs go to stderr, configured once here; stdout carries only what a script might read.

Importing this module loads only the argument parser: each command imports what it runs when it runs, so that
``sigil-agent healthcheck`` (a probe, started every few seconds on every node) and ``--help`` stay light, and the
agent's own start pays for grpclib, h11 and the SVID cache once (``bench/agent.py`` measures both).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sigil.node_agent.api_commands import add_api_commands, run_api_command

if TYPE_CHECKING:
    import asyncio

    from sigil.node_agent.settings import AgentSettings

__all__ = ["main"]

#: Installed packages that structlog would import into the agent for nothing (:func:`_without_dead_weight`).
_DEAD_WEIGHT = ("rich", "greenlet")

#: How long a drain may take before the process gives up waiting and exits anyway.
_DRAIN_TIMEOUT = 10.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sigil-agent", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="serve the Workload API on this node")
    run.add_argument(
        "--config", type=Path, help="YAML file (top-level keys and the agent: section)"
    )
    run.add_argument(
        "--data-dir", help="state directory (env SIGIL_DATA_DIR); the agent uses DIR/agent"
    )
    run.add_argument("--trust-domain", help="trust domain (env SIGIL_TRUST_DOMAIN)")
    run.add_argument("--socket", help="Workload API socket path (env SIGIL_AGENT_SOCKET)")
    run.add_argument(
        "--issuer-url", help="https://host:port of sigil-server (env SIGIL_ISSUER_URL)"
    )
    run.add_argument(
        "--trust-bundle", help="PEM file of the trust domain's CAs (env SIGIL_TRUST_BUNDLE)"
    )
    run.add_argument(
        "--insecure-bootstrap",
        action="store_const",
        const=True,
        default=None,
        help="trust the issuer's first answer (development only; env SIGIL_INSECURE_BOOTSTRAP)",
    )
    run.add_argument(
        "--join-token-file",
        type=Path,
        help="file holding the one-time join token (or env SIGIL_JOIN_TOKEN)",
    )
    # Accepted only to be refused with the way out: a token on the command line shows in ps to every user.
    run.add_argument("--join-token", help=argparse.SUPPRESS)
    run.add_argument("--node-name", help="this node's name (env SIGIL_NODE_NAME)")

    health = commands.add_parser(
        "healthcheck", help="exit 0 when the running agent's health endpoint says it is ready"
    )
    health.add_argument("--config", type=Path, help="YAML file holding agent.health_listen")
    health.add_argument(
        "--health-listen",
        help="HOST:PORT of the agent's health endpoint (env SIGIL_AGENT_HEALTH_LISTEN)",
    )
    health.add_argument("--timeout", type=float, default=5.0, help="seconds (default 5)")

    add_api_commands(commands)
    return parser


async def _serve(settings: AgentSettings) -> int:
    import asyncio
    import signal

    from sigil.kit import freeze_startup_heap
    from sigil.node_agent.agent import NodeAgent
    from sigil.node_agent.health import HealthServer

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    agent = NodeAgent(settings)
    health = (
        HealthServer(settings.health_listen, agent.readiness) if settings.health_listen else None
    )
    if health is not None:
        # Up before the agent, so that liveness holds while it waits for the issuer.
        await health.start()
    # Starting may wait for an issuer that is not up yet; a signal then ends the wait too.
    starting = asyncio.create_task(agent.start(), name="sigil-agent-start")

    def on_signal() -> None:
        stop.set()
        starting.cancel()

    signals = (signal.SIGTERM, signal.SIGINT)
    for number in signals:
        loop.add_signal_handler(number, on_signal)
    try:
        try:
            await starting
        except asyncio.CancelledError:
            if not stop.is_set():
                raise
            return 0
        # The SVIDs, bundles and first policy set live as long as the process: out of the collector's full
        # passes, which would stall every workload's stream (sigil.kit.heap).
        freeze_startup_heap()
        print(f"sigil-agent: Workload API on {settings.socket_path}", flush=True)
        print(f"SPIFFE_ENDPOINT_SOCKET={agent.endpoint}", flush=True)
        await stop.wait()
        print("sigil-agent: stopping", file=sys.stderr, flush=True)
        return 0
    finally:
        await asyncio.wait_for(agent.aclose(), _DRAIN_TIMEOUT)
        if health is not None:
            await health.aclose()
        for number in signals:
            loop.remove_signal_handler(number)


_ON_THE_COMMAND_LINE = (
    "error: --join-token puts the token in the process list, where every user of this host can read it (ps); "
    "write it to a file readable only by the agent and pass --join-token-file FILE, "
    "or set the environment variable SIGIL_JOIN_TOKEN"
)


def _without_dead_weight() -> None:
    """Keep structlog from loading rich and greenlet in the agent process: resident memory it would never use.

    structlog imports what it finds installed: rich (a development environment has it, through the test tools)
    for its console renderer's default traceback formatter, and rich imports pygments and attrs (4.5 MB); greenlet
    (installed everywhere with SQLAlchemy's asyncio extra, which the issuer needs) for the deprecated
    ``structlog.threadlocal``, which falls back to :class:`threading.local` without it (0.2 MB; the C++ runtime
    it links is loaded by protobuf anyway). The agent logs through :func:`sigil.kit.configure_logging`, which
    uses plain tracebacks (rich's show each frame's locals, and a frame may hold a private key) and no
    thread-local context, and it runs no greenlets (it never imports SQLAlchemy), so both are dead weight here.
    ``None`` in :data:`sys.modules` makes their import fail, which structlog handles as "not installed"
    (https://docs.python.org/3/reference/import.html#the-module-cache). Done only in a fresh process, before
    structlog is imported: where it already is (a test calling :func:`main`), they are loaded anyway.
    """
    if "structlog" not in sys.modules:
        for name in _DEAD_WEIGHT:
            sys.modules.setdefault(name, None)  # type: ignore[arg-type]


def _run(args: argparse.Namespace) -> int:
    if args.join_token is not None:
        print(_ON_THE_COMMAND_LINE, file=sys.stderr)
        return 2
    _without_dead_weight()

    import asyncio

    from sigil.kit import configure_logging
    from sigil.node_agent.settings import load_agent_settings

    settings = load_agent_settings(
        args.config,
        data_dir=args.data_dir,
        trust_domain=args.trust_domain,
        socket_path=args.socket,
        issuer_url=args.issuer_url,
        trust_bundle_path=args.trust_bundle,
        insecure_bootstrap=args.insecure_bootstrap,
        join_token_file=args.join_token_file,
        node_name=args.node_name,
    )
    configure_logging(settings.log_level)
    with asyncio.Runner(loop_factory=_loop_factory(settings.event_loop)) as runner:
        return runner.run(_serve(settings))


def _loop_factory(event_loop: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """What makes the agent's loop: None for asyncio's own, uvloop's when it is chosen (and installed)."""
    from sigil.node_agent.errors import AgentConfigError

    if event_loop != "uvloop":
        return None
    try:
        import uvloop
    except ImportError as err:
        raise AgentConfigError(
            "event_loop", "uvloop is not installed (it comes with the sigil[uvloop] extra)"
        ) from err
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def _healthcheck(args: argparse.Namespace) -> int:
    from sigil.node_agent.health import check_ready
    from sigil.node_agent.settings import health_listen_of

    listen = health_listen_of(args.config, args.health_listen)
    if listen is None:
        print(
            "error: no health endpoint to ask: set agent.health_listen in --config, "
            "SIGIL_AGENT_HEALTH_LISTEN or --health-listen HOST:PORT",
            file=sys.stderr,
        )
        return 2
    try:
        ready, reason = check_ready(listen, timeout=args.timeout)
    except ValueError as err:
        print(f"error: health_listen {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(
            f"error: the agent's health endpoint at {listen} does not answer: {err}",
            file=sys.stderr,
        )
        return 1
    if not ready:
        print(f"not ready: {reason}", file=sys.stderr)
        return 1
    print(f"ready: {reason}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The ``sigil-agent`` console script."""
    from sigil.ca.errors import SigilError

    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "healthcheck":
            return _healthcheck(args)
        return run_api_command(args)
    except SigilError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
