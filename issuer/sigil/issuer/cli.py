"""``sigil-server``: the issuance server and its admin verbs.

The admin verbs (``authority``, ``bundle``, ``x509``, ``jwt``) work directly on the datastore; the first use of the
embedded default (no ``--config``) initialises a local trust domain under ``$SIGIL_DATA_DIR`` (``./.sigil``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from sigil.ca.authority import Authority, AuthorityKind, AuthorityStatus
from sigil.ca.errors import SigilError
from sigil.ca.keys import write_secret_file
from sigil.ca.service import CertificateAuthority
from sigil.ca.settings import parse_duration
from sigil.ca.spiffe_id import SpiffeId
from sigil.issuer.settings import ServerSettings, load_server_settings

__all__ = ["main"]

Command = Callable[[CertificateAuthority, argparse.Namespace], Awaitable[int]]


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


def _authority_line(authority: Authority) -> str:
    flags = " tainted" if authority.tainted else ""
    return (
        f"{authority.kind.value:<4} {authority.authority_id:<40} {authority.status.value:<8}{flags:<8} "
        f"{authority.not_before:%Y-%m-%dT%H:%M:%SZ} {authority.not_after:%Y-%m-%dT%H:%M:%SZ}"
    )


async def _authority(ca: CertificateAuthority, args: argparse.Namespace) -> int:
    kind = AuthorityKind(args.kind)
    verb = args.verb
    if verb == "list":
        print(f"{'KIND':<4} {'ID':<40} {'STATUS':<16} {'NOT BEFORE':<20} NOT AFTER")
        for authority in ca.authorities(None if args.all_kinds else kind):
            print(_authority_line(authority))
        return 0
    if verb == "prepare":
        print(_authority_line(await ca.prepare(kind)))
        return 0
    authority_id = args.id
    if authority_id is None:
        wanted = AuthorityStatus.PREPARED if verb == "activate" else AuthorityStatus.OLD
        candidates = [
            a
            for a in ca.authorities(kind)
            if a.status is wanted and (verb != "revoke" or a.tainted)
        ]
        if len(candidates) != 1:
            print(
                f"error: say which {kind} authority with --id ({len(candidates)} candidates)",
                file=sys.stderr,
            )
            return 2
        authority_id = candidates[0].authority_id
    if verb == "activate":
        print(_authority_line(await ca.activate(kind, authority_id)))
    elif verb == "taint":
        count = await ca.taint(kind, authority_id)
        print(
            f"tainted {kind} authority {authority_id}; {count} SVID(s) it signed are due for re-issue"
        )
    else:
        print(_authority_line(await ca.revoke(kind, authority_id)))
    return 0


async def _bundle(ca: CertificateAuthority, args: argparse.Namespace) -> int:
    bundle = ca.bundle()
    data = bundle.to_pem() if args.format == "pem" else bundle.to_json() + b"\n"
    sys.stdout.buffer.write(data)
    return 0


async def _x509_mint(ca: CertificateAuthority, args: argparse.Namespace) -> int:
    svid = await ca.mint_x509_svid(args.spiffe_id, ttl=args.ttl, dns_names=args.dns or ())
    if svid.private_key is None:  # cannot happen: minted without a CSR, so the CA made the key
        raise TypeError("x509 mint returned no key")
    key_pem = svid.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    bundle_pem = ca.bundle().to_pem()
    if args.write is None:
        sys.stdout.buffer.write(svid.chain_pem() + key_pem + bundle_pem)
        return 0
    directory: Path = args.write
    await asyncio.to_thread(_write_svid_files, directory, svid.chain_pem(), key_pem, bundle_pem)
    print(
        f"X509-SVID {svid.spiffe_id} (serial {svid.serial_hex}, expires {svid.not_after:%Y-%m-%dT%H:%M:%SZ})"
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


async def _jwt_mint(ca: CertificateAuthority, args: argparse.Namespace) -> int:
    svid = await ca.mint_jwt_svid(args.spiffe_id, audience=args.audience, ttl=args.ttl)
    if args.output == "json":
        print(
            json.dumps(
                {
                    "token": svid.token,
                    "spiffe_id": str(svid.spiffe_id),
                    "expiry": svid.expiry.isoformat(),
                }
            )
        )
    else:
        print(svid.token)
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
    commands = parser.add_subparsers(dest="command", required=True)

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
    return parser


async def _run(settings: ServerSettings, command: Command, args: argparse.Namespace) -> int:
    ca = await CertificateAuthority.open(settings.ca)
    try:
        return await command(ca, args)
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
        )
        return asyncio.run(_run(settings, args.run, args))
    except SigilError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
