"""Private keys at rest: files of mode 0600, written atomically, never quoted in errors."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest
from sigil_testing.ca import open_ca
from sigil_testing.clock import FakeClock

from sigil.ca import SpiffeId
from sigil.ca.authority import AuthorityKind
from sigil.ca.errors import KeyStoreError
from sigil.ca.keys import (
    KeyType,
    generate_key,
    load_private_key,
    private_key_der,
    write_private_key,
    write_secret_file,
)
from sigil.ca.keystore import load_key_encryption_key
from sigil.ca.service import CertificateAuthority
from sigil.ca.settings import CaSettings


def test_key_files_are_0600_and_replace_atomically(tmp_path: Path) -> None:
    """A written key is mode 0600; rewriting it leaves one file and no temporary behind."""
    path = tmp_path / "keys" / "k.pem"
    write_private_key(path, generate_key())
    write_private_key(path, second := generate_key(KeyType.EC_P384))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(path.parent) == ["k.pem"]
    assert private_key_der(load_private_key(path)) == private_key_der(second)


@pytest.mark.parametrize("durable", [True, False])
def test_a_secret_file_is_synced_only_when_it_must_survive_power_loss(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, durable: bool
) -> None:
    """``durable=False`` (the agent's policy copy) writes the same whole 0600 file, without the two fsyncs.

    Whether a write reached the disk cannot be seen without cutting the power, so the fsyncs are counted.
    """
    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    path = tmp_path / "sub" / "policies.json"
    write_secret_file(path, b"one", durable=durable)
    write_secret_file(path, b"two", durable=durable)
    assert path.read_bytes() == b"two"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["policies.json"]
    assert len(synced) == (4 if durable else 0)


async def test_ca_key_files_are_private(ca: CertificateAuthority, tmp_path: Path) -> None:
    """Every authority key the CA wrote is 0600 in a 0700 directory."""
    key_dir = tmp_path / "data" / "keys"
    assert stat.S_IMODE(key_dir.stat().st_mode) == 0o700
    files = list(key_dir.iterdir())
    assert len(files) == 2
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)


def test_a_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    """Loading a key file that group or others can read fails, naming the file and the mode."""
    path = tmp_path / "k.pem"
    write_private_key(path, generate_key())
    path.chmod(0o644)
    with pytest.raises(KeyStoreError, match="0644"):
        load_private_key(path)


def test_errors_never_quote_the_key(tmp_path: Path) -> None:
    """A corrupt key file gives an error naming the file, with none of its bytes."""
    path = tmp_path / "k.pem"
    write_private_key(path, generate_key())
    data = path.read_bytes()
    corrupt = data.replace(b"MIG", b"XXX", 1)
    path.write_bytes(corrupt)
    with pytest.raises(KeyStoreError) as caught:
        load_private_key(path)
    message = str(caught.value)
    assert str(path) in message
    body = b"".join(corrupt.splitlines()[1:-1]).decode()
    assert body[:16] not in message


def _kek_file(tmp_path: Path, data: bytes | None = None) -> Path:
    path = tmp_path / "kek"
    path.write_bytes(data if data is not None else base64.b64encode(os.urandom(32)))
    path.chmod(0o400)
    return path


async def test_sealed_database_keys_need_no_key_files(tmp_path: Path) -> None:
    """With key_store 'database', keys live sealed in the datastore and no key file is written."""
    kek = _kek_file(tmp_path)
    ca = await open_ca(
        tmp_path / "d", FakeClock(), key_store="database", key_encryption_key_file=kek
    )
    try:
        svid = await ca.mint_x509_svid(SpiffeId.parse("spiffe://example.org/w"))
        assert svid.leaf.issuer == ca.signer(AuthorityKind.X509).issuer_name
        assert not (tmp_path / "d" / "keys").exists()
    finally:
        await ca.aclose()
    reopened = await open_ca(
        tmp_path / "d", FakeClock(), key_store="database", key_encryption_key_file=kek
    )
    try:
        assert (
            await reopened.mint_jwt_svid(SpiffeId.parse("spiffe://example.org/w"), audience=["a"])
        ).token
    finally:
        await reopened.aclose()


async def test_a_wrong_key_encryption_key_fails_closed(tmp_path: Path) -> None:
    """Opening sealed keys with another key-encryption key fails with a clear error, and nothing is signed."""
    ca = await open_ca(
        tmp_path / "d",
        FakeClock(),
        key_store="database",
        key_encryption_key_file=_kek_file(tmp_path),
    )
    await ca.aclose()
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(KeyStoreError, match="does not open with this key-encryption key"):
        await open_ca(
            tmp_path / "d",
            FakeClock(),
            key_store="database",
            key_encryption_key_file=_kek_file(other),
        )


def test_key_encryption_key_files_are_checked(tmp_path: Path) -> None:
    """A key-encryption key must be 32 bytes (raw or base64) in a file others cannot read."""
    assert len(load_key_encryption_key(_kek_file(tmp_path, os.urandom(32)))) == 32
    with pytest.raises(KeyStoreError, match="32 raw bytes"):
        load_key_encryption_key(_kek_file(tmp_path, b"short"))
    path = _kek_file(tmp_path)
    path.chmod(0o644)
    with pytest.raises(KeyStoreError, match="0644"):
        load_key_encryption_key(path)


def test_database_key_store_needs_its_key(tmp_path: Path) -> None:
    """Choosing the sealed store without naming the key-encryption key is a configuration error."""
    with pytest.raises(ValueError, match="needs key_encryption_key_file"):
        CaSettings.from_mapping({"key_store": "database"}, data_dir=tmp_path)
    with pytest.raises(ValueError, match="neither 'disk' nor 'database'"):
        CaSettings.from_mapping({"key_store": "vault"}, data_dir=tmp_path)
