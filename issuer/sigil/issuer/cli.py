"""``sigil-server``: the issuance server (``run``) and its admin verbs.

The admin verbs (``authority``, ``bundle``, ``x509``, ``jwt``, ``entry``, ``token``) go to the running server's admin
socket when a server listens there, so their effects reach agents at once; with no server they work directly on the
datastore. The first use of the embedded default (no ``--config``) initialises a local trust domain under
``$SIGIL_DATA_DIR`` (``./.sigil``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sigil.ca.authority import AuthorityKind
from sigil.ca.errors import SigilError
from sigil.ca.keys import write_secret_file
from sigil.ca.settings import parse_duration
from sigil.ca.spiffe_id import SpiffeId
from sigil.issuer.admin import AdminBackend, LocalAdmin, SocketAdmin, server_listening
from sigil.issuer.app import open_ca
from sigil.issuer.registry import Registry
from sigil.issuer.server import run_server
from sigil.issuer.settings import ServerSettings, load_server_settings

__all__ = ["main"]

Command = Callable[[AdminBackend, argparse.Namespace], Awaitable[int]]


def _duration(value: str) -> timedelta:
    try:
        return parse_duration(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def _spiffe_id(value: str) -> SpiffeId:
    try:
        return SpiffeId.parse(value)
    except SigilError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def _seconds(value: timedelta | None) -> float | None:
    return value.total_seconds() if value is not None else None


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
    result = await admin.authority_step(args.verb, args.kind, args.id)
    if "authority" in result:
        print(_authority_line(result["authority"]))
    else:
        print(
            f"tainted {result['kind']} authority {result['authority_id']}; "
            f"{result['reissue_due']} SVID(s) it signed are due for re-issue"
        )
    return 0


async def _bundle(admin: AdminBackend, args: argparse.Namespace) -> int:
    sys.stdout.buffer.write(await admin.bundle(args.format))
    return 0


async def _x509_mint(admin: AdminBackend, args: argparse.Namespace) -> int:
    minted = await admin.mint_x509(str(args.spiffe_id), _seconds(args.ttl), args.dns or [])
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
    minted = await admin.mint_jwt(str(args.spiffe_id), args.audience, _seconds(args.ttl))
    print(json.dumps(minted) if args.output == "json" else minted["token"])
    return 0


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


_KIND_NAMES = {
    "authorizationpolicy": "AuthorizationPolicy",
    "ap": "AuthorizationPolicy",
    "clusterauthorizationpolicy": "ClusterAuthorizationPolicy",
    "cap": "ClusterAuthorizationPolicy",
}


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
    run.set_defaults(run=None)

    authority = commands.add_parser("authority", help="list and rotate signing authorities by hand")
    authority.add_argument("verb", choices=["list", "prepare", "activate", "taint", "revoke"])
    authority.add_argument("--kind", choices=[k.value for k in AuthorityKind], default="x509")
    authority.add_argument("--id", help="authority ID (defaults to the only candidate)")
    authority.add_argument(
        "--all-kinds", action="store_true", help="with list: X.509 and JWT together"
    )
    authority.set_defaults(run=_authority)

    bundle = commands.add_parser("bundle", help="show the trust bundle")
    bundle.add_argument("verb", choices=["show"])
    bundle.add_argument("--format", choices=["spiffe", "pem"], default="spiffe")
    bundle.set_defaults(run=_bundle)

    x509 = commands.add_parser("x509", help="mint an X509-SVID with a CA-generated key")
    x509.add_argument("verb", choices=["mint"])
    x509.add_argument("--spiffe-id", type=_spiffe_id, required=True)
    x509.add_argument(
        "--ttl", type=_duration, help="lifetime such as 1h (default: the CA's x509_svid_ttl)"
    )
    x509.add_argument("--dns", action="append", help="a DNS SAN; repeat for several")
    x509.add_argument(
        "--write", type=Path, help="write svid.pem, key.pem and bundle.pem to this directory"
    )
    x509.set_defaults(run=_x509_mint)

    jwt = commands.add_parser("jwt", help="mint a JWT-SVID")
    jwt.add_argument("verb", choices=["mint"])
    jwt.add_argument("--spiffe-id", type=_spiffe_id, required=True)
    jwt.add_argument(
        "--audience", action="append", required=True, help="an audience; repeat for several"
    )
    jwt.add_argument("--ttl", type=_duration)
    jwt.add_argument("--output", choices=["text", "json"], default="text")
    jwt.set_defaults(run=_jwt_mint)

    entry = commands.add_parser("entry", help="registration entries for agents outside Kubernetes")
    entry.add_argument("verb", choices=["create", "list", "delete"])
    entry.add_argument("--spiffe-id", type=_spiffe_id)
    entry.add_argument("--parent-id", type=_spiffe_id, help="the agent's SPIFFE ID")
    entry.add_argument("--selector", action="append", help="type:value; repeat for several (AND)")
    entry.add_argument("--dns", action="append", help="a DNS SAN; repeat for several")
    entry.add_argument("--id", help="with delete: the entry ID")
    entry.add_argument("--output", choices=["text", "json"], default="text")
    entry.set_defaults(run=_entry)

    token = commands.add_parser("token", help="one-time join tokens for agents outside Kubernetes")
    token.add_argument("verb", choices=["generate"])
    token.add_argument("--ttl", type=_duration, default=timedelta(hours=1))
    token.add_argument("--output", choices=["text", "json"], default="text")
    token.set_defaults(run=_token)

    policy = commands.add_parser(
        "policy", help="authorization policies held in the server's datastore"
    )
    policy.add_argument("verb", choices=["apply", "delete", "list"])
    policy.add_argument("target", nargs="*", help="with delete: KIND NAMESPACE/NAME")
    policy.add_argument("-f", "--filename", type=Path, help="with apply: a YAML file of policies")
    policy.add_argument("--output", choices=["text", "json"], default="text")
    policy.set_defaults(run=_policy)
    return parser


async def _run(settings: ServerSettings, command: Command, args: argparse.Namespace) -> int:
    """Through the running server's admin socket when one listens there, else on the datastore directly."""
    if await asyncio.to_thread(server_listening, settings.admin_socket):
        async with SocketAdmin(settings.admin_socket) as remote:
            return await command(remote, args)
    ca = await open_ca(settings)
    try:
        return await command(LocalAdmin(ca, Registry(ca.store.engine)), args)
    finally:
        await ca.close()


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
        )
        if args.run is None:
            return asyncio.run(run_server(settings))
        return asyncio.run(_run(settings, args.run, args))
    except SigilError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
