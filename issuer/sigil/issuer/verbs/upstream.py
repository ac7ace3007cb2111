"""The ``upstream`` verbs: move Sigil's X.509 authority from one upstream CA to another, and show where it is.

``prepare --dir NEWDIR`` (the new root joins the bundle), ``activate`` (the authority under it signs; the old ones
are tainted so agents re-issue at once), ``retire`` (the old root leaves the bundle, refused while SVIDs chained to
it are unreplaced unless ``--force``) and ``show``: SPIRE's ``upstreamauthority`` verbs in Sigil's shape.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path
from typing import Any

from sigil.issuer.admin import AdminBackend
from sigil.issuer.verbs.arguments import Subcommands

__all__ = ["add_upstream_verbs"]


def _absolute(value: str) -> Path:
    # The running server reads the files, from its own working directory: send it the operator's full path.
    return Path(value).absolute()


def add_upstream_verbs(commands: Subcommands) -> None:
    """``upstream prepare|activate|retire|show``."""
    upstream = commands.add_parser(
        "upstream", help="rotate the upstream CA above Sigil's X.509 authority"
    )
    upstream.add_argument("verb", choices=["show", "prepare", "activate", "retire"])
    upstream.add_argument(
        "--dir",
        type=_absolute,
        help="with prepare: the new ca-cert.pem, ca-key.pem, cert-chain.pem and root-cert.pem",
    )
    upstream.add_argument(
        "--force",
        action="store_true",
        help="with retire: drop the old root even though SVIDs chained to it are not yet replaced",
    )
    upstream.set_defaults(run=_upstream)


def _when(value: str) -> str:
    return f"{datetime.fromisoformat(value):%Y-%m-%dT%H:%M:%SZ}"


def _show(upstreams: list[dict[str, Any]]) -> None:
    if not upstreams:
        print("no upstream rotation recorded (the upstream is ca.upstream_dir's)")
    for one in upstreams:
        print(f"{one['status']:<8} root {one['root_sha256'][:16]}  {one['subject']}")
        print(f"         directory {one['directory']}, root expires {_when(one['not_after'])}")
        for authority in one["authorities"]:
            flags = " tainted" if authority["tainted"] else ""
            print(f"         authority {authority['authority_id']} {authority['status']}{flags}")
        left = one["outstanding"]
        if left["remaining"]:
            print(f"         not yet replaced: {left['summary']}")


async def _upstream(admin: AdminBackend, args: argparse.Namespace) -> int:
    if args.verb == "show":
        _show(await admin.upstream_show())
        return 0
    directory = str(args.dir) if args.dir is not None else None
    result = await admin.upstream_step(args.verb, directory, force=args.force)
    if args.verb == "prepare":
        root = result["root"]
        print(
            f"prepared x509 authority {result['authority']['authority_id']} under root "
            f"{root['root_sha256'][:16]} ({root['subject']}); the new root is in the bundle"
        )
    elif args.verb == "activate":
        print(f"activated x509 authority {result['authority']['authority_id']} under the new root")
        for authority_id, due in result["tainted"].items():
            print(
                f"tainted x509 authority {authority_id}; {due} SVID(s) it signed are due for re-issue"
            )
    else:
        for root in result["retired_roots"]:
            print(f"retired upstream root {root[:16]}; it has left the bundle")
        for authority_id in result["revoked"]:
            print(f"revoked x509 authority {authority_id}")
        if "cut" in result:
            print(f"forced: {result['cut']['summary']}; those SVIDs no longer verify")
    return 0
