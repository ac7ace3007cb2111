"""The verbs for agents outside Kubernetes: registration ``entry`` (create, list, delete) and join ``token``.

Inside a cluster the issuer derives identities from pods; an agent on a VM or laptop instead attests with a one-time
join token and gets the SVIDs of the entries whose selectors its workloads show, so both verbs live together.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta

from sigil.issuer.admin import AdminBackend
from sigil.issuer.verbs.arguments import Subcommands, duration, spiffe_id

__all__ = ["add_registration_verbs"]


def add_registration_verbs(commands: Subcommands) -> None:
    """``entry`` and ``token``, in that order."""
    entry = commands.add_parser("entry", help="registration entries for agents outside Kubernetes")
    entry.add_argument("verb", choices=["create", "list", "delete"])
    entry.add_argument("--spiffe-id", type=spiffe_id)
    entry.add_argument("--parent-id", type=spiffe_id, help="the agent's SPIFFE ID")
    entry.add_argument("--selector", action="append", help="type:value; repeat for several (AND)")
    entry.add_argument("--dns", action="append", help="a DNS SAN; repeat for several")
    entry.add_argument("--id", help="with delete: the entry ID")
    entry.add_argument("--output", choices=["text", "json"], default="text")
    entry.set_defaults(run=_entry)

    token = commands.add_parser("token", help="one-time join tokens for agents outside Kubernetes")
    token.add_argument("verb", choices=["generate"])
    token.add_argument("--ttl", type=duration, default=timedelta(hours=1))
    token.add_argument("--output", choices=["text", "json"], default="text")
    token.set_defaults(run=_token)


async def _entry(admin: AdminBackend, args: argparse.Namespace) -> int:
    if args.verb == "create":
        if args.spiffe_id is None or args.parent_id is None or not args.selector:
            print(
                "error: entry create needs --spiffe-id, --parent-id and --selector", file=sys.stderr
            )
            return 2
        entry = await admin.create_entry(
            str(args.spiffe_id), str(args.parent_id), args.selector, args.dns or []
        )
        print(json.dumps(entry) if args.output == "json" else f"created entry {entry['entry_id']}")
        return 0
    if args.verb == "delete":
        if args.id is None:
            print("error: entry delete needs --id", file=sys.stderr)
            return 2
        await admin.delete_entry(args.id)
        print(f"deleted entry {args.id}")
        return 0
    entries = await admin.list_entries()
    if args.output == "json":
        print(json.dumps(entries))
        return 0
    print(f"{'ENTRY ID':<36} {'SPIFFE ID':<40} {'PARENT ID':<40} SELECTORS")
    for entry in entries:
        print(
            f"{entry['entry_id']:<36} {entry['spiffe_id']:<40} {entry['parent_id']:<40} "
            + ",".join(entry["selectors"])
        )
    return 0


async def _token(admin: AdminBackend, args: argparse.Namespace) -> int:
    token = await admin.generate_token(args.ttl.total_seconds())
    if args.output == "json":
        print(json.dumps(token))
    else:
        print(f"Token: {token['token']}")
        print(f"Agent ID: {token['agent_id']} (expires {token['expires_at']})")
    return 0
