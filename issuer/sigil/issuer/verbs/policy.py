"""The ``policy`` verb: apply, delete and list the authorization policies held in the server's datastore, and
show the effective policy of a pod under every policy in force (``effective``).

Policies may also come from files and CRDs; this verb edits only the datastore's, and says so when a policy file
holds the same name and so keeps the applied one out of force.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from sigil.enforcer.flags import parse_pairs, port_argument
from sigil.enforcer.policy.defaults import DefaultPolicy
from sigil.enforcer.policy.effective_text import render_text
from sigil.issuer.admin import AdminBackend
from sigil.issuer.verbs.arguments import Subcommands

__all__ = ["add_policy_verbs"]

_KIND_NAMES = {
    "authorizationpolicy": "AuthorizationPolicy",
    "ap": "AuthorizationPolicy",
    "clusterauthorizationpolicy": "ClusterAuthorizationPolicy",
    "cap": "ClusterAuthorizationPolicy",
}


def add_policy_verbs(commands: Subcommands) -> None:
    """``policy``."""
    policy = commands.add_parser(
        "policy", help="authorization policies held in the server's datastore"
    )
    policy.add_argument("verb", choices=["apply", "delete", "list", "effective"])
    policy.add_argument("target", nargs="*", help="with delete: KIND NAMESPACE/NAME")
    policy.add_argument("-f", "--filename", type=Path, help="with apply: a YAML file of policies")
    policy.add_argument("--pod", metavar="NS/NAME", help="with effective: the pod to show")
    policy.add_argument(
        "--labels",
        metavar="K=V,...",
        help="with effective: the pod's labels (default: from the server's pod watch)",
    )
    policy.add_argument(
        "--port", type=port_argument, metavar="N", help="with effective: this port only"
    )
    policy.add_argument(
        "--default",
        choices=[d.value for d in DefaultPolicy],
        default="allow",
        help="with effective: the enforcers' --default",
    )
    policy.add_argument("--output", choices=["text", "json"], default="text")
    policy.set_defaults(run=_policy)


async def _policy(admin: AdminBackend, args: argparse.Namespace) -> int:
    if args.verb == "apply":
        if args.filename is None:
            print("error: policy apply needs -f FILE", file=sys.stderr)
            return 2
        text = await asyncio.to_thread(args.filename.read_text, encoding="utf-8")
        result = await admin.apply_policies(str(args.filename), text)
        for item in result["applied"]:
            ref = f"{item['namespace']}/{item['name']}" if item["namespace"] else item["name"]
            note = "" if item["in_force"] else " (not in force: a policy file holds this name)"
            print(f"{item['kind']} {ref} applied{note}")
        return 0
    if args.verb == "delete":
        if len(args.target) != 2 or args.target[0].lower() not in _KIND_NAMES:
            print(
                "error: policy delete KIND NAMESPACE/NAME (or KIND NAME, cluster-scoped)",
                file=sys.stderr,
            )
            return 2
        kind = _KIND_NAMES[args.target[0].lower()]
        namespace, _, name = args.target[1].rpartition("/")
        await admin.delete_policy(kind, namespace, name)
        print(f"{kind} {args.target[1]} deleted")
        return 0
    if args.verb == "effective":
        if args.pod is None:
            print("error: policy effective needs --pod NAMESPACE/NAME", file=sys.stderr)
            return 2
        labels = None if args.labels is None else parse_pairs("--labels", args.labels)
        view = await admin.effective_policy(args.pod, labels, args.port, args.default)
        print(json.dumps(view, indent=2) if args.output == "json" else render_text(view))
        return 0
    listing = await admin.list_policies()
    if args.output == "json":
        print(json.dumps(listing))
        return 0
    print(f"revision {listing['revision']}")
    print(f"{'KIND':<27} {'NAMESPACE/NAME':<40} SOURCE")
    for policy in listing["policies"]:
        ref = f"{policy['namespace']}/{policy['name']}" if policy["namespace"] else policy["name"]
        print(f"{policy['kind']:<27} {ref:<40} {policy['source']}")
    return 0
