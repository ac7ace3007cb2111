"""Moving from Istio: ``sigil-enforcer import istio`` and ``sigil-enforcer diff`` on real Istio policy files.

``import`` writes the translation out; ``diff`` then proves it decides as the Istio files themselves (read and
translated at load), and tells a hand-written Sigil policy that means the same from one that does not.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from enforcer.istio_docs import Doc, istio_ap, op, src
from enforcer.istio_strategies import POLICY_SETS
from enforcer.policy_docs import ap, dump, rule, sa
from hypothesis import HealthCheck, given, settings

from sigil.enforcer.cli import main

TD = ("--trust-domain", "example.org")
ISTIO_DB = [
    istio_ap(
        "db-from-web",
        match={"app": "db"},
        rules=[
            {"from": [src(principals=["cluster.local/ns/shop/sa/web"])], "to": [op(ports=["5432"])]}
        ],
    )
]


def _write(directory: Path, name: str, documents: list[Doc]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(dump(*documents))
    return directory


def test_diff_proves_a_hand_written_policy_equivalent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The Sigil policy a user writes for the same intent is equivalent to the Istio one: diff exits 0."""
    istio = _write(tmp_path / "istio", "db.yaml", ISTIO_DB)
    sigil = _write(
        tmp_path / "sigil",
        "db.yaml",
        [ap("db-from-web", match={"app": "db"}, rules=[rule([sa("web")], ports=[5432])])],
    )
    assert main(["diff", str(istio), str(sigil), *TD]) == 0


def test_diff_finds_where_a_hand_written_policy_differs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Sigil policy that forgot the port differs from the Istio one: diff exits 1 and names a differing case."""
    istio = _write(tmp_path / "istio", "db.yaml", ISTIO_DB)
    sigil = _write(
        tmp_path / "sigil",
        "db.yaml",
        [ap("db-from-web", match={"app": "db"}, rules=[rule([sa("web")])])],
    )
    assert main(["diff", str(istio), str(sigil), *TD, "--json"]) == 1
    out = capsys.readouterr().out
    cases = [d["case"] for d in json.loads(out)["differences"]]
    assert cases
    assert {c["peer"] for c in cases} == {"spiffe://example.org/ns/shop/sa/web"}
    assert 5432 not in {c["port"] for c in cases}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(POLICY_SETS)
def test_import_then_diff_is_equivalent(policies: list[Doc]) -> None:
    """What ``import`` writes decides as the Istio files do (diff exits 0); import exits 0 exactly when exact."""
    with tempfile.TemporaryDirectory() as scratch:
        istio = _write(Path(scratch) / "istio", "policies.yaml", policies)
        out = Path(scratch) / "sigil"
        code = main(["import", "istio", "-f", str(istio), "--output", str(out), *TD])
        report = json.loads((out / "report.json").read_text())
        assert code == (0 if report["exact"] else 1)
        if any(f["exactness"] == "refused" for f in report["findings"]):
            return  # the imported set lacks what was refused; the Istio files' load reports it too
        assert main(["diff", str(istio), str(out), *TD]) == 0
