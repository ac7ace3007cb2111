"""``sigil-enforcer import``: another mesh's documents written out as Sigil resources with a report; exit 0 when
exact, 1 when anything was approximated or refused, 2 on bad input.

The dialect is the toy of ``toy_dialect`` registered under Istio's group (the real translators live on their
own branches); what is tested here is the command's side: reading, batching, writing, reporting, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from enforcer.policy_docs import ap, dump, rule, sa
from enforcer.toy_dialect import toy

from enforcer import toy_dialect
from sigil.enforcer.cli import main
from sigil.enforcer.policy import parse_policy
from sigil.enforcer.policy.dialects import base
from sigil.enforcer.policy.dialects.base import TRANSLATED_FROM

PARTNER = "spiffe://partner.org/x"


@pytest.fixture(autouse=True)
def _toy_dialect(monkeypatch: pytest.MonkeyPatch) -> None:
    """Istio's group reads through the toy dialect for the length of a test."""
    monkeypatch.setitem(
        base._DIALECT_MODULES, "security.istio.io", ("istio", "enforcer.toy_dialect")
    )
    toy_dialect.BATCHES.clear()


def test_exact_import_writes_one_file_per_resource_and_a_report(tmp_path: Path) -> None:
    """Every translated resource gets its own file (a valid Sigil policy, annotated with its source), the
    report lists them, Sigil documents among the input are skipped and said so; exit 0."""
    source = tmp_path / "in.yaml"
    source.write_text(
        dump(
            toy("a", "shop", "DENY", PARTNER),
            toy("b", "istio-system", "ALLOW", PARTNER),
            ap("sigil", rules=[rule([sa("web")])]),
        ),
        encoding="utf-8",
    )
    out = tmp_path / "out"
    argv = ["import", "istio", "-f", str(source), "--output", str(out)]
    assert main([*argv, "--root-namespace", "istio-system"]) == 0
    files = sorted(p.name for p in out.iterdir())
    assert files == [
        "authorizationpolicy-istio-system-istio-b.yaml",
        "authorizationpolicy-shop-istio-a.yaml",
        "report.json",
    ]
    document = yaml.safe_load((out / "authorizationpolicy-istio-system-istio-b.yaml").read_text())
    assert parse_policy(document).mesh  # type: ignore[union-attr]
    annotations = document["metadata"]["annotations"]
    assert annotations[TRANSLATED_FROM] == "istio AuthorizationPolicy istio-system/b"
    report = json.loads((out / "report.json").read_text())
    assert report["exact"] is True
    assert report["skipped"] == [f"{source}#2"]
    assert [[f"{source}#0", f"{source}#1"]] == toy_dialect.BATCHES


def test_an_approximation_exits_1_and_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --output the resources go to stdout and the report to stderr; an approximation exits 1."""
    source = tmp_path / "in.yaml"
    source.write_text(dump(toy("a", "shop", "DENY", PARTNER, approximate=True)), encoding="utf-8")
    assert main(["import", "istio", "-f", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    (document,) = list(yaml.safe_load_all(captured.out))
    assert document["metadata"]["name"] == "istio-a"
    assert "approximate: istio AuthorizationPolicy shop/a" in captured.err
    assert "NOT exact" in captured.err


def test_a_refusal_exits_1_and_writes_nothing_for_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A refused object yields no resource and a finding saying why; exit 1."""
    source = tmp_path / "in.yaml"
    source.write_text(dump(toy("a", "shop", "DENY", PARTNER, refuse=True)), encoding="utf-8")
    out = tmp_path / "out"
    assert main(["import", "istio", "-f", str(source), "--output", str(out)]) == 1
    report = json.loads((out / "report.json").read_text())
    assert report["resources"] == []
    assert report["findings"][0]["exactness"] == "refused"
    assert "toy refusal" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: [", "not YAML"),
        (dump(ap("sigil", rules=[rule([sa("web")])])), "no istio document found"),
    ],
    ids=["not-yaml", "no-istio"],
)
def test_bad_input_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    """A file that is not YAML, or no document of the dialect at all, is bad input."""
    source = tmp_path / "in.yaml"
    source.write_text(text, encoding="utf-8")
    assert main(["import", "istio", "-f", str(source)]) == 2
    assert expected in capsys.readouterr().err
