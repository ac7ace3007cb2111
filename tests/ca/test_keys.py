"""Private keys at rest: files of mode 0600, written atomically, never quoted in errors."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from sigil.ca.errors import KeyStoreError
from sigil.ca.keys import (
    KeyType,
    generate_key,
    load_private_key,
    private_key_der,
    write_private_key,
)
from sigil.ca.service import CertificateAuthority


def test_key_files_are_0600_and_replace_atomically(tmp_path: Path) -> None:
    """A written key is mode 0600; rewriting it leaves one file and no temporary behind."""
    path = tmp_path / "keys" / "k.pem"
    write_private_key(path, generate_key())
    write_private_key(path, second := generate_key(KeyType.EC_P384))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(path.parent) == ["k.pem"]
    assert private_key_der(load_private_key(path)) == private_key_der(second)


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
