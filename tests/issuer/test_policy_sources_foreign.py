"""The issuer's policy directory with Istio's and Linkerd's documents beside Sigil's: translated together whenever
one of them moves, with the issuer's trust domain and root namespace, and kept when a translator fails.

The dialect is the toy of ``tests/enforcer/toy_dialect.py`` registered under Istio's group: the real
translators live on their own branches."""

from __future__ import annotations

from pathlib import Path

import pytest
from enforcer.policy_docs import ap, dump, rule, sa
from enforcer.toy_dialect import toy

from enforcer import toy_dialect
from sigil.enforcer.policy.dialects import base
from sigil.enforcer.policy.dialects.base import TranslateOptions
from sigil.enforcer.policy.model import AuthorizationPolicy
from sigil.issuer.policies.sources import PolicySources
from sigil.issuer.settings.sections import parse_policy_settings

PARTNER = "spiffe://partner.org/x"


@pytest.fixture(autouse=True)
def _toy_dialect(monkeypatch: pytest.MonkeyPatch) -> None:
    """Istio's group reads through the toy dialect for the length of a test."""
    monkeypatch.setitem(
        base._DIALECT_MODULES, "security.istio.io", ("istio", "enforcer.toy_dialect")
    )
    toy_dialect.BATCHES.clear()


def _names(sources: PolicySources) -> list[str]:
    return sorted(p.name for p in sources.policies())


async def test_the_directorys_foreign_documents_are_translated_together(tmp_path: Path) -> None:
    """Both files' foreign documents go to one translation with the issuer's options; a change to one file
    translates them all again; a removed file's translation leaves."""
    (tmp_path / "a.yaml").write_text(dump(toy("a", "mesh-root", "DENY", PARTNER)), encoding="utf-8")
    (tmp_path / "b.yaml").write_text(
        dump(toy("b", "shop", "DENY", PARTNER), ap("own", rules=[rule([sa("web")])])),
        encoding="utf-8",
    )
    sources = PolicySources(tmp_path, translation=TranslateOptions(root_namespace="mesh-root"))
    reports = await sources.scan_directory()
    assert all(report.ok for report in reports)
    assert _names(sources) == ["istio-a", "istio-b", "own"]
    assert [[f"{tmp_path}/a.yaml", f"{tmp_path}/b.yaml#0"]] == toy_dialect.BATCHES
    mesh = next(p for p in sources.policies() if p.name == "istio-a")
    assert isinstance(mesh, AuthorizationPolicy)
    assert mesh.mesh
    (tmp_path / "a.yaml").write_text(dump(toy("c", "shop", "DENY", PARTNER)), encoding="utf-8")
    await sources.scan_directory()
    assert _names(sources) == ["istio-b", "istio-c", "own"]
    (tmp_path / "a.yaml").unlink()
    await sources.scan_directory()
    assert _names(sources) == ["istio-b", "own"]


async def test_a_failing_translator_keeps_the_last_good_translation(tmp_path: Path) -> None:
    """A translator that fails on the new content is reported, and the old translation stays in force."""
    (tmp_path / "a.yaml").write_text(dump(toy("a", "shop", "DENY", PARTNER)), encoding="utf-8")
    sources = PolicySources(tmp_path)
    await sources.scan_directory()
    (tmp_path / "a.yaml").write_text(
        dump(toy("a", "shop", "DENY", PARTNER, crash=True)), encoding="utf-8"
    )
    reports = await sources.scan_directory()
    assert any("toy translator crashed" in str(e) for r in reports for e in r.errors)
    assert _names(sources) == ["istio-a"]


def test_the_root_namespace_is_a_policy_setting() -> None:
    """``policy.root_namespace`` sets Istio's root namespace (default istio-system)."""
    assert parse_policy_settings({}, base_dir=None).root_namespace == "istio-system"
    assert parse_policy_settings({"root_namespace": "mesh"}, base_dir=None).root_namespace == "mesh"
