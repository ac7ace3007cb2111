"""What must hold after a ``sigil-server`` killed with SIGKILL comes back: the crash drill's invariants, as a list.

Each check reads what a user or an operator can read: the authorities and the bundle through the admin API, the key
files in the key directory (or the sealed keys in the database, with the operator's key-encryption key), the SVID
journal in the database, and the SVIDs the agent was answered, verified against the published bundle.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

import jwt
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from sigil.ca.authority import AuthorityKind
from sigil.ca.bundle import TrustBundle
from sigil.ca.datastore.models import JournalRow
from sigil.ca.datastore.store import default_sqlite_url
from sigil.ca.errors import KeyStoreError, SigilError
from sigil.ca.jwtsvid import validate_jwt_svid
from sigil.ca.keys import load_private_key, public_key_der
from sigil.ca.keystore import SealedDatabaseKeyStore, load_key_encryption_key
from sigil.issuer.admin import SocketAdmin
from sigil_testing.crash_load import AUDIENCE, BATCH, WORKLOAD_ID, Issued
from sigil_testing.server_process import TRUST_DOMAIN, ServerProcess

__all__ = ["Findings", "check_after_restart"]


@dataclass
class Findings:
    """What the checks found: ``problems`` must stay empty; the counts are for the report."""

    problems: list[str] = field(default_factory=list)
    svids_verified: int = 0
    #: SVIDs of an authority the operator revoked with --force since: cut on purpose, not checked.
    svids_cut_by_revoke: int = 0
    stray_temporary_files: int = 0


async def check_after_restart(server: ServerProcess, issued: Issued) -> Findings:
    """Keys, bundle, issued SVIDs and journal of the restarted ``server``."""
    found = Findings()
    async with SocketAdmin(server.admin_socket) as admin:
        authorities = await admin.authorities()
        bundle = TrustBundle.parse_jwks(TRUST_DOMAIN, await admin.bundle("spiffe"))
    revoked = {str(a["authority_id"]) for a in authorities if a["status"] == "revoked"}
    live = [a for a in authorities if a["status"] != "revoked"]
    await _check_keys(server, live, bundle, found)
    await _check_destroyed(server, [a for a in authorities if a["status"] == "revoked"], found)
    _check_bundle(live, bundle, found)
    _check_svids(issued, bundle, revoked, found)
    await _check_journal(server, issued, found)
    return found


async def _check_keys(
    server: ServerProcess, live: list[dict[str, object]], bundle: TrustBundle, found: Findings
) -> None:
    """Every authority that is not revoked has its key, intact, 0600, matching the bundle's public key."""
    anchors = {_spki(a) for a in bundle.x509_authorities}
    jwt_keys = {kid: public_key_der(k) for kid, k in bundle.jwt_authorities.items()}
    keys = {}
    if server.kek is None:
        for path in sorted(server.key_dir.iterdir()):
            if path.name.startswith("."):
                found.stray_temporary_files += 1
                continue
            try:
                keys[path.name] = load_private_key(
                    path
                )  # refuses a torn file and a mode other than 0600
            except SigilError as err:
                found.problems.append(f"key file {path.name}: {err}")
    else:
        engine = create_async_engine(server.database_url)
        store = SealedDatabaseKeyStore(engine, load_key_encryption_key(server.kek))
        try:
            for authority in live:
                kind = AuthorityKind(str(authority["kind"]))
                name = f"{kind.value}-{authority['authority_id']}.pem"
                try:
                    keys[name] = await store.get(kind, str(authority["authority_id"]))
                except SigilError as err:
                    found.problems.append(f"sealed key {name}: {err}")
        finally:
            await engine.dispose()
    for authority in live:
        kind_name, authority_id = str(authority["kind"]), str(authority["authority_id"])
        key = keys.get(f"{kind_name}-{authority_id}.pem")
        if key is None:
            found.problems.append(
                f"{authority['status']} {kind_name} authority {authority_id}: key lost"
            )
            continue
        public = public_key_der(key.public_key())
        if (kind_name == "x509" and public not in anchors) or (
            kind_name == "jwt" and jwt_keys.get(authority_id) != public
        ):
            found.problems.append(
                f"{kind_name} authority {authority_id}: key is not the one in the bundle"
            )


async def _check_destroyed(
    server: ServerProcess, revoked: list[dict[str, object]], found: Findings
) -> None:
    """The key of every revoked authority is destroyed (a revoked key left behind could still sign)."""
    if server.kek is None:
        for authority in revoked:
            path = server.key_dir / f"{authority['kind']}-{authority['authority_id']}.pem"
            if path.exists():
                found.problems.append(
                    f"revoked {authority['kind']} authority {authority['authority_id']}: key kept"
                )
        return
    engine = create_async_engine(server.database_url)
    store = SealedDatabaseKeyStore(engine, load_key_encryption_key(server.kek))
    try:
        for authority in revoked:
            with contextlib.suppress(KeyStoreError):
                await store.get(
                    AuthorityKind(str(authority["kind"])), str(authority["authority_id"])
                )
                found.problems.append(
                    f"revoked {authority['kind']} authority {authority['authority_id']}: key kept"
                )
    finally:
        await engine.dispose()


def _check_bundle(live: list[dict[str, object]], bundle: TrustBundle, found: Findings) -> None:
    """The bundle holds exactly the authorities that are not revoked."""
    x509_live = sum(1 for a in live if a["kind"] == "x509")
    if len(bundle.x509_authorities) != x509_live:
        found.problems.append(
            f"bundle has {len(bundle.x509_authorities)} X.509 anchors for {x509_live} live authorities"
        )
    jwt_live = {str(a["authority_id"]) for a in live if a["kind"] == "jwt"}
    if set(bundle.jwt_authorities) != jwt_live:
        found.problems.append(
            f"bundle JWT keys {sorted(bundle.jwt_authorities)} != live JWT authorities {sorted(jwt_live)}"
        )


def _check_svids(issued: Issued, bundle: TrustBundle, revoked: set[str], found: Findings) -> None:
    """Every SVID answered before a kill verifies, unless the operator revoked its authority since."""
    now = datetime.now(UTC)
    for _holder, svid in issued.x509:
        if svid.signer_ids & revoked:
            found.svids_cut_by_revoke += 1
            continue
        leaf = svid.chain[0]
        if not any(_issued_by(leaf, anchor) for anchor in bundle.x509_authorities):
            found.problems.append(
                f"X509-SVID {leaf.serial_number:x}: no anchor in the bundle signed it"
            )
        elif leaf.not_valid_after_utc <= now:
            found.problems.append(f"X509-SVID {leaf.serial_number:x}: expired")
        else:
            found.svids_verified += 1
    keys = {TRUST_DOMAIN: bundle.jwt_authorities}
    for _holder, token in issued.jwt:
        kid = _kid(token.token)
        if kid in revoked:
            found.svids_cut_by_revoke += 1
            continue
        try:
            validate_jwt_svid(token.token, audience=AUDIENCE, keys_for=keys, now=now)
        except SigilError as err:
            found.problems.append(f"JWT-SVID of key {kid}: {err}")
        else:
            found.svids_verified += 1


def _spki(certificate: x509.Certificate) -> bytes:
    return certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _issued_by(leaf: x509.Certificate, anchor: x509.Certificate) -> bool:
    try:
        leaf.verify_directly_issued_by(anchor)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _kid(token: str) -> str:
    # Only the header is read, unverified, to know which key signed; validate_jwt_svid verifies the rest.
    return str(jwt.get_unverified_header(token).get("kid", ""))


async def _check_journal(server: ServerProcess, issued: Issued, found: Findings) -> None:
    """Every SVID answered is journaled, and the drill's agents' batches of workload SVIDs are whole (``BATCH``
    rows each; an agent's own SVID is journaled under it too, alone)."""
    url = server.database_url or default_sqlite_url(server.data_dir)
    holders = {holder for holder, _ in issued.x509}
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            rows = (await connection.execute(select(JournalRow))).all()
    finally:
        await engine.dispose()
    serials = {row.serial for row in rows}
    for _holder, svid in issued.x509:
        if format(svid.chain[0].serial_number, "032x") not in serials:
            found.problems.append(
                f"X509-SVID {svid.chain[0].serial_number:x} missing from the journal"
            )
    batches = Counter(
        (row.holder, row.issued_at)
        for row in rows
        if row.kind == "x509" and row.holder in holders and row.spiffe_id == str(WORKLOAD_ID)
    )
    torn = {key: n for key, n in batches.items() if n != BATCH}
    if torn:
        found.problems.append(f"half-written batches in the journal: {torn}")
