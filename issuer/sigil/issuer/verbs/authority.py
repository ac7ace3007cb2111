"""The CA's verbs: ``authority`` (list and rotate by hand), ``bundle show``, ``x509 mint`` and ``jwt mint``.

They are the verbs an operator uses on the signing authorities and what they sign outside the agent path, so they
share the authority listing format and the files ``x509 mint --write`` leaves, like ``spire-server``'s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from sigil.ca.authority import AuthorityKind
from sigil.ca.keys import write_secret_file
from sigil.issuer.admin import AdminBackend
from sigil.issuer.verbs.arguments import Subcommands, duration, seconds, spiffe_id

__all__ = ["add_authority_verbs"]


def add_authority_verbs(commands: Subcommands) -> None:
    """``authority``, ``bundle``, ``x509`` and ``jwt``, in that order."""
    authority = commands.add_parser("authority", help="list and rotate signing authorities by hand")
    authority.add_argument(
        "verb", choices=["list", "show", "prepare", "activate", "taint", "revoke"]
    )
    authority.add_argument("--kind", choices=[k.value for k in AuthorityKind], default="x509")
    authority.add_argument("--id", help="authority ID (defaults to the only candidate)")
    authority.add_argument(
        "--all-kinds", action="store_true", help="with list: X.509 and JWT together"
    )
    authority.add_argument(
        "--force",
        action="store_true",
        help="with revoke: revoke even though SVIDs it signed are unexpired and not yet replaced",
    )
    authority.set_defaults(run=_authority)

    bundle = commands.add_parser("bundle", help="show the trust bundle")
    bundle.add_argument("verb", choices=["show"])
    bundle.add_argument("--format", choices=["spiffe", "pem"], default="spiffe")
    bundle.set_defaults(run=_bundle)

    x509 = commands.add_parser("x509", help="mint an X509-SVID with a CA-generated key")
    x509.add_argument("verb", choices=["mint"])
    x509.add_argument("--spiffe-id", type=spiffe_id, required=True)
    x509.add_argument(
        "--ttl", type=duration, help="lifetime such as 1h (default: the CA's x509_svid_ttl)"
    )
    x509.add_argument("--dns", action="append", help="a DNS SAN; repeat for several")
    x509.add_argument(
        "--write", type=Path, help="write svid.pem, key.pem and bundle.pem to this directory"
    )
    x509.set_defaults(run=_x509_mint)

    jwt = commands.add_parser("jwt", help="mint a JWT-SVID")
    jwt.add_argument("verb", choices=["mint"])
    jwt.add_argument("--spiffe-id", type=spiffe_id, required=True)
    jwt.add_argument(
        "--audience", action="append", required=True, help="an audience; repeat for several"
    )
    jwt.add_argument("--ttl", type=duration)
    jwt.add_argument("--output", choices=["text", "json"], default="text")
    jwt.set_defaults(run=_jwt_mint)


def _authority_line(authority: dict[str, Any]) -> str:
    flags = " tainted" if authority["tainted"] else ""
    not_before = datetime.fromisoformat(authority["not_before"])
    not_after = datetime.fromisoformat(authority["not_after"])
    return (
        f"{authority['kind']:<4} {authority['authority_id']:<40} {authority['status']:<8}{flags:<8} "
        f"{not_before:%Y-%m-%dT%H:%M:%SZ} {not_after:%Y-%m-%dT%H:%M:%SZ}"
    )


async def _authority(admin: AdminBackend, args: argparse.Namespace) -> int:
    if args.verb == "list":
        print(f"{'KIND':<4} {'ID':<40} {'STATUS':<16} {'NOT BEFORE':<20} NOT AFTER")
        for authority in await admin.authorities():
            if args.all_kinds or authority["kind"] == args.kind:
                print(_authority_line(authority))
        return 0
    if args.verb == "show":
        if not args.id:
            print("error: authority show needs --id ID (see `authority list`)", file=sys.stderr)
            return 2
        shown = await admin.show_authority(args.id)
        print(_authority_line(shown))
        _print_outstanding(shown["outstanding"])
        return 0
    result = await admin.authority_step(args.verb, args.kind, args.id, force=args.force)
    if "authority" in result:
        print(_authority_line(result["authority"]))
        if "cut" in result:
            print(f"forced: {result['cut']['summary']}; those SVIDs no longer verify")
    else:
        print(
            f"tainted {result['kind']} authority {result['authority_id']}; "
            f"{result['reissue_due']} SVID(s) it signed are due for re-issue"
        )
    return 0


def _print_outstanding(left: dict[str, Any]) -> None:
    """What revoking now would cut: the count, each holder, the last expiry."""
    print(f"not yet replaced: {left['remaining']}")
    for holder, count in left["holders"].items():
        print(f"  {holder or '(no agent: minted by hand or agentless)'}: {count}")
    if left["last_expiry"]:
        last = datetime.fromisoformat(left["last_expiry"])
        print(f"last expires: {last:%Y-%m-%dT%H:%M:%SZ}")


async def _bundle(admin: AdminBackend, args: argparse.Namespace) -> int:
    sys.stdout.buffer.write(await admin.bundle(args.format))
    return 0


async def _x509_mint(admin: AdminBackend, args: argparse.Namespace) -> int:
    minted = await admin.mint_x509(str(args.spiffe_id), seconds(args.ttl), args.dns or [])
    chain_pem, key_pem = minted["chain_pem"].encode(), minted["key_pem"].encode()
    bundle_pem = minted["bundle_pem"].encode()
    if args.write is None:
        sys.stdout.buffer.write(chain_pem + key_pem + bundle_pem)
        return 0
    directory: Path = args.write
    await asyncio.to_thread(_write_svid_files, directory, chain_pem, key_pem, bundle_pem)
    expires = datetime.fromisoformat(minted["expires_at"])
    print(
        f"X509-SVID {minted['spiffe_id']} (serial {minted['serial']}, expires {expires:%Y-%m-%dT%H:%M:%SZ})"
    )
    for name in ("svid.pem", "key.pem", "bundle.pem"):
        print(f"  wrote {directory / name}")
    return 0


def _write_svid_files(directory: Path, chain_pem: bytes, key_pem: bytes, bundle_pem: bytes) -> None:
    """The files ``spire-server x509 mint -write`` leaves: the chain, the key (0600), the bundle."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "svid.pem").write_bytes(chain_pem)
    write_secret_file(directory / "key.pem", key_pem)
    (directory / "bundle.pem").write_bytes(bundle_pem)


async def _jwt_mint(admin: AdminBackend, args: argparse.Namespace) -> int:
    minted = await admin.mint_jwt(str(args.spiffe_id), args.audience, seconds(args.ttl))
    print(json.dumps(minted) if args.output == "json" else minted["token"])
    return 0
