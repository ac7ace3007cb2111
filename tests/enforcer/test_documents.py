"""Judging policy documents: one judge for every source, canonical documents kept, nothing parsed twice."""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

import pytest
from enforcer.policy_docs import ap, cap, dump, rule, sa

from sigil.enforcer import PolicySourceError, PolicyStore
from sigil.enforcer.policy import AcceptedPolicy, document_key, judge
from sigil.enforcer.policy.documents import SourceResult
from sigil.enforcer.policy.loader import parse_file, policy_stamps
from sigil.enforcer.policy.schema import Where

HERE = Where("test")


def test_accepted_policy_keeps_its_document_in_canonical_json() -> None:
    """An accepted policy carries its document as sorted, compact JSON, YAML dates turned into strings."""
    doc = ap("db", rules=[rule([sa("web")])])
    doc["metadata"]["creationTimestamp"] = datetime.date(
        2026, 11, 30
    )  # kubectl get -o yaml adds it
    (accepted,) = judge([(doc, HERE)], source="s").accepted
    assert accepted.canonical == json.dumps(
        accepted.document, sort_keys=True, separators=(",", ":")
    )
    assert accepted.document["metadata"]["creationTimestamp"] == "2026-11-30"
    assert accepted.key == ("AuthorizationPolicy", "shop", "db")


def test_every_document_gets_an_outcome_in_input_order() -> None:
    """Each document yields its accepted policy or its refusal, in the order the documents came."""
    bad = ap("broken")
    del bad["spec"]["action"]
    result = judge([(ap("a"), HERE), (bad, HERE), (cap("c"), HERE)], source="s")
    kinds = [type(outcome).__name__ for outcome in result.outcomes]
    assert kinds == ["AcceptedPolicy", "PolicyError", "AcceptedPolicy"]
    assert result.refused == {("AuthorizationPolicy", "shop", "broken")}
    assert not result.broken


def test_a_refused_document_of_an_unknown_kind_breaks_its_source() -> None:
    """A kind Sigil does not know could be a typo of either kind, so the whole source's last good set stays."""
    typo = ap("db")
    typo["kind"] = "AuthorisationPolicy"
    assert document_key(typo) is None
    result = judge([(typo, HERE)], source="s")
    assert result.broken
    assert result.refused == frozenset()


def test_known_documents_are_not_parsed_again() -> None:
    """A plain JSON document accepted before is accepted again as the very same policy object."""
    (first,) = judge([(ap("db"), HERE)], source="s").accepted
    (again,) = judge([(ap("db"), HERE)], source="s", known={first.canonical: first}).accepted
    assert again is first


def _decoded(document: dict[str, object]) -> object:
    """``document`` as a feed delivers it: canonical JSON text, decoded."""
    return json.loads(json.dumps(document, sort_keys=True))


def test_known_json_documents_are_matched_by_key_and_value() -> None:
    """A feed's unchanged documents come back as the same objects; a changed one is judged afresh."""
    first = judge(
        [(_decoded(ap("a")), HERE), (_decoded(ap("b")), HERE)], source="s", from_json=True
    )
    known = {a.canonical: a for a in first.accepted}
    changed = ap("b", rules=[rule([sa("web")])])
    again = judge(
        [(_decoded(ap("a")), HERE), (_decoded(changed), HERE)],
        source="s",
        known=known,
        from_json=True,
    )
    assert again.accepted[0] is first.accepted[0]
    assert again.accepted[1] is not first.accepted[1]
    assert again.accepted[1].canonical == json.dumps(changed, sort_keys=True, separators=(",", ":"))


def test_a_feed_documents_text_is_kept_rather_than_written_again() -> None:
    """A document judged with the text it was decoded from keeps that text, and is judged the same as without."""
    text = json.dumps(ap("db", rules=[rule([sa("web")])]), sort_keys=True, separators=(",", ":"))
    (written,) = judge([(json.loads(text), HERE)], source="s", from_json=True).accepted
    (kept,) = judge([(json.loads(text), HERE)], source="s", from_json=True, texts=[text]).accepted
    assert kept.canonical is text
    assert kept.canonical == written.canonical
    assert kept.policy == written.policy


def test_a_sent_text_is_judged_by_its_document_not_by_its_name() -> None:
    """A text naming a known document's canonical text is still judged as what it decodes to."""
    (known,) = judge([(_decoded(ap("db")), HERE)], source="s", from_json=True).accepted
    changed = ap("db", action="DENY")
    result = judge(
        [(_decoded(changed), HERE)],
        source="s",
        known={known.canonical: known},
        from_json=True,
        texts=[known.canonical],
    )
    (accepted,) = result.accepted
    assert accepted is not known
    assert accepted.policy != known.policy
    assert accepted.document == _decoded(changed)


def _ported(port: object) -> dict[str, object]:
    return ap("db", rules=[rule([sa("web")], ports=[port])])  # type: ignore[list-item]


@pytest.mark.parametrize("twin", [True, 1.0])
def test_a_value_equal_only_to_python_is_judged_afresh(twin: object) -> None:
    """1, 1.0 and true are equal to Python but not to the schema: such a twin of a known document is judged."""
    (known,) = judge([(_decoded(_ported(1)), HERE)], source="s", from_json=True).accepted
    document = _decoded(_ported(1))
    assert isinstance(document, dict)
    document["spec"]["rules"][0]["networkAttributes"]["ports"] = [twin]
    assert document == known.document
    result = judge([(document, HERE)], source="s", known={known.canonical: known}, from_json=True)
    assert result.accepted == ()
    assert len(result.errors) == 1


def test_a_yaml_date_is_judged_even_when_its_text_matches_a_known_document() -> None:
    """An unquoted date where a name belongs is refused, though its canonical text equals an accepted one's."""
    quoted = ap("db", match={"day": "2026-11-30"})
    (known,) = judge([(quoted, HERE)], source="s").accepted
    unquoted = ap("db", match={"day": "x"})
    unquoted["spec"]["targetRefs"][0]["selector"]["matchLabels"]["day"] = datetime.date(
        2026, 11, 30
    )
    result = judge([(unquoted, HERE)], source="s", known={known.canonical: known})
    assert result.accepted == ()
    assert len(result.errors) == 1


def test_a_file_is_judged_by_the_same_judge() -> None:
    """A YAML file's documents come out as the judge's accepted policies, canonical documents included."""
    result = parse_file(dump(ap("a"), cap("b")), file="p.yaml")
    assert isinstance(result, SourceResult)
    assert [accepted.policy.name for accepted in result.accepted] == ["a", "b"]
    assert all(isinstance(accepted, AcceptedPolicy) for accepted in result.accepted)


def test_a_change_of_documents_alone_keeps_the_revision() -> None:
    """An annotation edit changes the documents in force but not what is enforced, so the revision stays."""
    store = PolicyStore()
    store.apply(parse_file(dump(ap("a")), file="p.yaml"))
    annotated = ap("a")
    annotated["metadata"]["annotations"] = {"owner": "team-db"}
    report = store.apply(parse_file(dump(annotated), file="p.yaml"))
    assert (report.revision, report.changed) == (1, False)
    (in_force,) = store.current.accepted
    assert in_force.document["metadata"]["annotations"] == {"owner": "team-db"}


def test_the_store_says_which_source_owns_each_policy() -> None:
    """On a name clash the source that sorts first owns the policy, and the store says so."""
    store = PolicyStore()
    store.apply(parse_file(dump(ap("a")), file="/b.yaml"))
    store.apply(parse_file(dump(ap("a")), file="/a.yaml"))
    assert store.owners() == {("AuthorizationPolicy", "shop", "a"): "/a.yaml"}


def test_stamps_follow_the_files_of_a_directory(tmp_path: Path) -> None:
    """A file's stamp moves when it is rewritten, and a removed file leaves the stamps."""
    (tmp_path / "a.yaml").write_text(dump(ap("a")), encoding="utf-8")
    (tmp_path / "b.yaml").write_text(dump(ap("b")), encoding="utf-8")
    before = policy_stamps(tmp_path)
    (tmp_path / "a.yaml").write_text(dump(ap("a", action="DENY")), encoding="utf-8")
    os.utime(tmp_path / "a.yaml", ns=(1, 1))
    (tmp_path / "b.yaml").unlink()
    after = policy_stamps(tmp_path)
    assert set(after) == {str(tmp_path / "a.yaml")}
    assert after[str(tmp_path / "a.yaml")] != before[str(tmp_path / "a.yaml")]


def test_stamping_a_missing_directory_is_refused(tmp_path: Path) -> None:
    """A directory that cannot be listed raises rather than reading as "every file was deleted"."""
    with pytest.raises(PolicySourceError):
        policy_stamps(tmp_path / "gone")
