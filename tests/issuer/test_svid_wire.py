"""An X509-SVID leaves the issuer as the same JSON whether it is written from its dict or spliced."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sigil_testing.ca import make_csr, open_ca, write_upstream_ca
from sigil_testing.clock import FakeClock

from sigil.ca import SpiffeId
from sigil.issuer.edge.routes.common import svid_body, svid_json


@pytest.mark.parametrize("upstream", [False, True], ids=["self-signed", "under-upstream"])
async def test_spliced_svid_json_is_what_json_dumps_writes(tmp_path: Path, upstream: bool) -> None:
    """Byte for byte, for a leaf alone and for a leaf with its intermediates."""
    extra = {"upstream_dir": write_upstream_ca(tmp_path / "up").directory} if upstream else {}
    ca = await open_ca(tmp_path / "d", FakeClock(), **extra)
    try:
        csr, _ = make_csr()
        svid = await ca.mint_x509_svid(
            SpiffeId.parse("spiffe://example.org/ns/a/sa/b"), csr=csr, dns_names=["b.a.svc"]
        )
        assert svid_json(svid) == json.dumps(svid_body(svid))
        assert json.loads(svid_json(svid))["chain_pem"].count("BEGIN CERTIFICATE") == (
            3 if upstream else 1
        )
    finally:
        await ca.aclose()


async def test_spliced_svid_json_for_every_length_of_the_last_pem_line(tmp_path: Path) -> None:
    """Longer and longer DNS names move the leaf's base64 through every length of its last 64-character line.

    The ECDSA signature's own length varies (70 to 72 bytes), so which sizes give which lengths is left to chance:
    the names grow until every length was seen (about 64 characters; 400 at most)."""
    ca = await open_ca(tmp_path / "d", FakeClock())
    try:
        csr, _ = make_csr()
        last_lines: set[int] = set()
        for size in range(1, 401):
            # A name is 64 characters at most (the first becomes the CN): longer totals take more names.
            names = [chr(ord("a") + k) * min(60, size - 60 * k) for k in range(-(-size // 60))]
            svid = await ca.mint_x509_svid(
                SpiffeId.parse("spiffe://example.org/ns/a/sa/b"), csr=csr, dns_names=names
            )
            assert svid_json(svid) == json.dumps(svid_body(svid))
            last_lines.add(-(-len(svid.leaf_der) // 3) * 4 % 64)
            if len(last_lines) == 16:
                break
        assert last_lines == set(range(0, 64, 4))
    finally:
        await ca.aclose()
