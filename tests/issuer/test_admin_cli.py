"""The ``sigil-server`` admin verbs, run as an operator would run them."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from sigil_testing.ca import openssl

from sigil.issuer.cli import main


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_first_use_initialises_a_trust_domain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The first command on an empty data dir creates one active X.509 and one active JWT authority."""
    code, out, _ = _run(capsys, "--data-dir", str(tmp_path), "authority", "list", "--all-kinds")
    assert code == 0
    rows = out.splitlines()[1:]
    assert sorted((r.split()[0], r.split()[2]) for r in rows) == [
        ("jwt", "active"),
        ("x509", "active"),
    ]
    assert (tmp_path / "datastore.sqlite3").exists()


def test_x509_mint_writes_what_spire_writes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``x509 mint --write`` leaves svid.pem, key.pem (0600) and bundle.pem that openssl verifies."""
    out_dir = tmp_path / "out"
    code, out, _ = _run(
        capsys,
        "--data-dir",
        str(tmp_path / "d"),
        "x509",
        "mint",
        "--spiffe-id",
        "spiffe://example.org/demo",
        "--dns",
        "demo.local",
        "--ttl",
        "10m",
        "--write",
        str(out_dir),
    )
    assert code == 0
    assert "spiffe://example.org/demo" in out
    assert stat.S_IMODE((out_dir / "key.pem").stat().st_mode) == 0o600
    result = openssl("verify", "-CAfile", "bundle.pem", "svid.pem", cwd=out_dir)
    assert result.returncode == 0, result.stderr
    text = openssl("x509", "-in", "svid.pem", "-noout", "-text", cwd=out_dir).stdout
    assert "URI:spiffe://example.org/demo" in text
    assert "DNS:demo.local" in text


def test_bundle_show_in_both_formats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``bundle show`` prints the SPIFFE JWKS by default and PEM on request."""
    code, out, _ = _run(capsys, "--data-dir", str(tmp_path), "bundle", "show")
    assert code == 0
    assert json.loads(out)["spiffe_sequence"] >= 1
    code, out, _ = _run(capsys, "--data-dir", str(tmp_path), "bundle", "show", "--format", "pem")
    assert out.startswith("-----BEGIN CERTIFICATE-----")


def test_manual_rotation_by_hand(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """prepare, activate, taint and revoke walk an authority through its life from the command line."""
    base = ["--data-dir", str(tmp_path)]
    _run(capsys, *base, "authority", "list")
    assert _run(capsys, *base, "authority", "prepare")[0] == 0
    assert _run(capsys, *base, "authority", "activate")[0] == 0
    code, out, _ = _run(capsys, *base, "authority", "taint")
    assert code == 0
    assert "due for re-issue" in out
    code, out, _ = _run(capsys, *base, "authority", "revoke")
    assert code == 0
    assert "revoked" in out
    statuses = [r.split()[2] for r in _run(capsys, *base, "authority", "list")[1].splitlines()[1:]]
    assert sorted(statuses) == ["active", "revoked"]


def test_jwt_mint_prints_a_token(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``jwt mint`` prints a compact JWS for the asked audience."""
    code, out, _ = _run(
        capsys,
        "--data-dir",
        str(tmp_path),
        "jwt",
        "mint",
        "--spiffe-id",
        "spiffe://example.org/a",
        "--audience",
        "x",
    )
    assert code == 0
    assert out.strip().count(".") == 2


def test_wrong_steps_fail_with_a_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Tainting the active authority by ID is refused with exit 1 and the reason on stderr."""
    base = ["--data-dir", str(tmp_path)]
    active = _run(capsys, *base, "authority", "list")[1].splitlines()[1].split()[1]
    code, _, err = _run(capsys, *base, "authority", "taint", "--id", active)
    assert code == 1
    assert "only an old authority can be tainted" in err


def test_bad_spiffe_id_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A non-conformant SPIFFE ID exits 2 naming the broken rule, and nothing is minted."""
    with pytest.raises(SystemExit) as caught:
        main(
            [
                "--data-dir",
                str(tmp_path),
                "x509",
                "mint",
                "--spiffe-id",
                "spiffe://example.org/a/../b",
            ]
        )
    assert caught.value.code == 2
    assert "'.' or '..'" in capsys.readouterr().err
    assert not (tmp_path / "datastore.sqlite3").exists()


def test_broken_config_names_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A config file with broken YAML is refused naming the file and the line."""
    config = tmp_path / "sigil.yaml"
    config.write_text("trust_domain: example.org\nca:\n  ca_ttl: [24h\n")
    code, _, err = _run(capsys, "--config", str(config), "authority", "list")
    assert code == 1
    assert str(config) in err
    assert "line" in err


def test_config_file_env_and_flag_layering(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trust domain comes from the flag, else SIGIL_TRUST_DOMAIN, else the file."""
    config = tmp_path / "sigil.yaml"
    config.write_text(f"data_dir: {tmp_path / 'file-dir'}\ntrust_domain: file.example\n")

    def mint(spiffe_id: str, *extra: str) -> tuple[int, str]:
        code, _, err = _run(
            capsys, "--config", str(config), *extra, "x509", "mint", "--spiffe-id", spiffe_id
        )
        return code, err

    assert mint("spiffe://file.example/w")[0] == 0
    assert (tmp_path / "file-dir" / "datastore.sqlite3").exists()
    monkeypatch.setenv("SIGIL_TRUST_DOMAIN", "env.example")
    env_dir = ("--data-dir", str(tmp_path / "env-dir"))
    assert mint("spiffe://env.example/w", *env_dir)[0] == 0
    code, err = mint("spiffe://file.example/w", *env_dir)
    assert code == 1
    assert "not in this CA's trust domain env.example" in err
    flag = ("--data-dir", str(tmp_path / "flag-dir"), "--trust-domain", "flag.example")
    assert mint("spiffe://flag.example/w", *flag)[0] == 0
    assert mint("spiffe://env.example/w", *flag)[0] == 1
