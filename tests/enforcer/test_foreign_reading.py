"""Istio's and Linkerd's documents read wherever Sigil reads policies: set aside per file, translated in one
batch per source, judged as Sigil documents, with findings logged and refusals reported.

The dialect here is a toy registered under Istio's API group (``toy_dialect``): the real translators live on
their own branches; these tests pin down the readers' side of the contract (``policy/dialects/base.py``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from enforcer.policy_docs import ap, dump, rule, sa
from enforcer.toy_dialect import toy

from enforcer import toy_dialect
from sigil.ca.spiffe_id import SpiffeId, TrustDomain
from sigil.enforcer.cli import main
from sigil.enforcer.errors import TranslationRefusedError
from sigil.enforcer.policy import Target
from sigil.enforcer.policy.dialects import base
from sigil.enforcer.policy.dialects.base import Exactness, TranslateOptions
from sigil.enforcer.policy.store import PolicyStore

Write = Callable[[Mapping[str, str]], Path]
WEB = "spiffe://example.org/ns/shop/sa/web"
PARTNER = "spiffe://partner.org/x"


@pytest.fixture(autouse=True)
def _toy_dialect(monkeypatch: pytest.MonkeyPatch) -> None:
    """Istio's group reads through the toy dialect for the length of a test."""
    monkeypatch.setitem(
        base._DIALECT_MODULES, "security.istio.io", ("istio", "enforcer.toy_dialect")
    )
    toy_dialect.BATCHES.clear()


def _decide(store: PolicyStore, peer: str, namespace: str = "shop") -> bool:
    index = store.current.compile(trust_domain=TrustDomain("example.org"))
    return index.decide(SpiffeId.parse(peer), Target(namespace, {"app": "db"}), 5432).allowed


def test_a_directory_mixing_dialects_is_one_policy_set(write_policies: Write) -> None:
    """Sigil's and the foreign dialect's documents of a directory decide together; the foreign ones of every
    file went to the translator in one batch."""
    directory = write_policies(
        {
            "sigil.yaml": dump(ap("web", rules=[rule([sa("web")])])),
            "a.yaml": dump(toy("no-partner", "shop", "DENY", PARTNER)),
            "b.yaml": dump(toy("also-web", "shop", "ALLOW", WEB)),
        }
    )
    store = PolicyStore()
    report = store.load_directory(directory)
    assert report.ok
    assert not _decide(store, PARTNER)
    assert _decide(store, WEB)
    assert [[f"{directory}/a.yaml", f"{directory}/b.yaml"]] == toy_dialect.BATCHES
    names = sorted(p.name for p in store.current.policies)
    assert names == ["istio-also-web", "istio-no-partner", "web"]


def test_options_reach_the_translation(write_policies: Write) -> None:
    """The root namespace given to the reader is the one the translator sees (its policy joins every namespace)."""
    directory = write_policies({"root.yaml": dump(toy("deny", "mesh-root", "DENY", WEB))})
    store = PolicyStore()
    store.load_directory(directory, options=TranslateOptions(root_namespace="mesh-root"))
    assert not _decide(store, WEB, namespace="shop")
    store = PolicyStore()
    store.load_directory(directory)
    assert _decide(store, WEB, namespace="shop")


def test_a_refused_translation_is_reported_and_the_rest_stays(write_policies: Write) -> None:
    """A part the translator refuses is a refusal naming the object and the reason; other documents apply."""
    directory = write_policies(
        {
            "a.yaml": dump(
                toy("bad", "shop", "DENY", WEB, refuse=True),
                toy("good", "shop", "DENY", PARTNER, approximate=True),
            )
        }
    )
    store = PolicyStore()
    report = store.load_directory(directory)
    (error,) = report.errors
    assert isinstance(error, TranslationRefusedError)
    assert "istio AuthorizationPolicy shop/bad" in str(error)
    assert "toy refusal" in str(error)
    assert [f.exactness for f in report.findings] == [Exactness.REFUSED, Exactness.APPROXIMATE]
    assert not _decide(store, PARTNER)


def test_a_crashing_translator_keeps_the_last_good_translation(write_policies: Write) -> None:
    """A translator that fails refuses its batch, and what the last good translation put in force stays."""
    directory = write_policies({"a.yaml": dump(toy("deny", "shop", "DENY", WEB))})
    store = PolicyStore()
    store.load_directory(directory)
    write_policies({"a.yaml": dump(toy("deny", "shop", "DENY", WEB, crash=True))})
    report = store.load_directory(directory)
    assert report.errors
    assert "toy translator crashed" in str(report.errors[0])
    assert not _decide(store, WEB)


def test_check_reads_foreign_documents_with_its_flags(
    write_policies: Write, capsys: pytest.CaptureFixture[str]
) -> None:
    """``check`` translates with --root-namespace and warns of approximations on stderr."""
    directory = write_policies(
        {"root.yaml": dump(toy("deny", "mesh-root", "DENY", WEB, approximate=True))}
    )
    argv = ["check", "--policies", str(directory), "--peer", WEB, "--namespace", "shop"]
    argv += ["--trust-domain", "example.org", "--port", "80"]
    assert main([*argv, "--root-namespace", "mesh-root"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "denied\n"
    assert "approximate: istio AuthorizationPolicy mesh-root/deny" in captured.err
    assert main(argv) == 0


def test_check_refuses_when_a_translation_refused(
    write_policies: Write, capsys: pytest.CaptureFixture[str]
) -> None:
    """A refused translation makes ``check`` exit 2 naming it, as a refused Sigil document does."""
    directory = write_policies({"a.yaml": dump(toy("bad", "shop", "DENY", WEB, refuse=True))})
    argv = ["check", "--policies", str(directory), "--peer", WEB, "--namespace", "shop"]
    assert main([*argv, "--port", "80"]) == 2
    assert "not translated: toy refusal" in capsys.readouterr().err


def test_effective_names_the_translated_objects(
    write_policies: Write, capsys: pytest.CaptureFixture[str]
) -> None:
    """``effective`` shows a translated policy with the objects it came from."""
    directory = write_policies({"a.yaml": dump(toy("deny", "shop", "DENY", PARTNER))})
    argv = ["effective", "--policies", str(directory), "--namespace", "shop", "--output", "json"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "translated from istio AuthorizationPolicy shop/deny" in out
