"""The ``agent`` verb (list, show, evict, ban, unban) and ``healthcheck``: SPIRE's operator controls over agents.

Evicting forgets an attested agent: every SVID it holds is refused at once and it must attest again. Banning also
refuses its attestation until it is unbanned. Both are rows in the shared datastore, which every replica reads on
each agent request, so they take effect on all replicas together.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from sigil.issuer.admin import AdminBackend, SocketAdmin, server_listening
from sigil.issuer.verbs.arguments import Subcommands, spiffe_id

__all__ = ["add_agent_verbs", "healthcheck"]


def add_agent_verbs(commands: Subcommands) -> None:
    """``agent`` and ``healthcheck``, in that order (``healthcheck`` is run by :func:`healthcheck`)."""
    agent = commands.add_parser("agent", help="list, evict and ban attested agents")
    agent.add_argument("verb", choices=["list", "show", "evict", "ban", "unban"])
    agent.add_argument("--id", type=spiffe_id, help="the agent's SPIFFE ID (all but list)")
    agent.add_argument("--output", choices=["text", "json"], default="text")
    agent.set_defaults(run=_agent)

    health = commands.add_parser(
        "healthcheck", help="exit 0 when the running server reports itself ready"
    )
    health.set_defaults(run=None)


def _time(value: str) -> str:
    return f"{datetime.fromisoformat(value):%Y-%m-%dT%H:%M:%SZ}"


def _line(agent: dict[str, Any]) -> str:
    state = "banned" if agent["banned"] else ("renewing" if agent["new_serial"] else "active")
    return (
        f"{agent['agent_id']:<64} {agent['method']:<6} {state:<9} "
        f"{_time(agent['attested_at']):<21} {_time(agent['expires_at'])}"
    )


async def _agent(admin: AdminBackend, args: argparse.Namespace) -> int:
    if args.verb == "list":
        agents = await admin.list_agents()
        if args.output == "json":
            print(json.dumps(agents))
            return 0
        print(f"{'AGENT ID':<64} {'METHOD':<6} {'STATE':<9} {'ATTESTED':<21} SVID EXPIRES")
        for agent in agents:
            print(_line(agent))
        return 0
    if args.id is None:
        print(f"error: agent {args.verb} needs --id", file=sys.stderr)
        return 2
    agent_id = str(args.id)
    if args.verb == "show":
        agent = await admin.show_agent(agent_id)
        if args.output == "json":
            print(json.dumps(agent))
        else:
            for key, value in agent.items():
                print(f"{key + ':':<13} {'' if value is None else value}")
        return 0
    if args.verb == "evict":
        await admin.evict_agent(agent_id)
        print(f"evicted {agent_id}: its SVIDs are refused until it attests again")
    elif args.verb == "ban":
        await admin.ban_agent(agent_id, banned=True)
        print(f"banned {agent_id}: its SVIDs and attestations are refused until unbanned")
    else:
        await admin.ban_agent(agent_id, banned=False)
        print(f"unbanned {agent_id}: it may attest again")
    return 0


async def healthcheck(admin_socket: Path) -> int:
    """0 when the server behind ``admin_socket`` answers ready; 1 with the reason on stderr otherwise."""
    if not await asyncio.to_thread(server_listening, admin_socket):
        print(f"unhealthy: no sigil-server listens on {admin_socket}", file=sys.stderr)
        return 1
    async with SocketAdmin(admin_socket) as admin:
        ok, state = await admin.ready()
    if ok:
        print("healthy: the server is ready")
        return 0
    why = [
        k
        for k, bad in (
            ("draining", state.get("draining")),
            ("pod cache not synced", not state.get("pod_cache_synced", True)),
        )
        if bad
    ]
    print(f"unhealthy: the server is not ready ({', '.join(why) or 'starting'})", file=sys.stderr)
    return 1
