"""Loading policy files: precise refusals, isolation of bad policies, last good kept, revisions."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
import yaml
from enforcer.policy_docs import Doc, anyone, ap, cap, dump, rule, sa, spiffe

from sigil.enforcer import (
    AuthorizationPolicy,
    PolicyError,
    PolicySourceError,
    PolicyStore,
    PolicyYamlError,
    UnknownFieldError,
)
from sigil.enforcer.policy.loader import parse_file

Write = Callable[[Mapping[str, str]], Path]


def _refusal(doc: Doc) -> PolicyError:
    result = parse_file(dump(doc), file="p.yaml")
    assert len(result.errors) == 1
    error = result.errors[0]
    assert isinstance(error, PolicyError)
    return error


def _with(doc: Doc, path: list[str | int], value: object) -> Doc:
    node = doc
    for step in path[:-1]:
        node = node[step]  # type: ignore[index]
    node[path[-1]] = value  # type: ignore[index]
    return doc


@pytest.mark.parametrize(
    ("change", "path", "expected"),
    [
        (
            (
                ["spec", "rules"],
                [rule([sa("web"), {"type": "Spiffe", "spiffe": "spiffe://x.org/a"}])],
            ),
            "spec.rules[0].sources[1].type",
            "one of 'ServiceAccount', 'SPIFFE'",
        ),
        (
            (["spec", "rules"], [rule([{"type": "SPIFFE"}])]),
            "spec.rules[0].sources[0].spiffe",
            "spiffe to be set when type is SPIFFE",
        ),
        (
            (["spec", "rules"], [rule([spiffe("spiffe://Example.org/x")])]),
            "spec.rules[0].sources[0].spiffe",
            "a SPIFFE ID",
        ),
        (
            (["spec", "rules"], [rule([spiffe("spiffe://example.org/a/../b")])]),
            "spec.rules[0].sources[0].spiffe",
            "'.' or '..'",
        ),
        (
            (["spec", "rules"], [rule(ports=[0])]),
            "spec.rules[0].networkAttributes.ports[0]",
            "an integer from 1 to 65535",
        ),
        (
            (["spec", "rules"], [rule(ports=list(range(1, 66)))]),
            "spec.rules[0].networkAttributes.ports",
            "a list of 0 to 64 items",
        ),
        (
            (
                ["spec", "rules"],
                [{"networkAttributes": {"portRanges": [{"start": 90, "end": 80}]}}],
            ),
            "spec.rules[0].networkAttributes.portRanges[0].end",
            "an end at or above start",
        ),
        (
            (["spec", "rules"], [{"networkAttributes": {"sourceCIDRs": ["10.0.0.1/8"]}}]),
            "spec.rules[0].networkAttributes.sourceCIDRs[0]",
            "a CIDR block with no host bits set",
        ),
        (
            (["spec", "rules"], [{"networkAttributes": {}}]),
            "spec.rules[0].networkAttributes",
            "ports, portRanges, exceptPorts, exceptPortRanges, sourceCIDRs or exceptSourceCIDRs",
        ),
        (
            (["spec", "rules"], [rule([{"type": "Namespaces"}])]),
            "spec.rules[0].sources[0].namespaces",
            "namespaces to be set when type is Namespaces",
        ),
        (
            (["spec", "rules"], [rule([{"type": "Any", "namespaces": {"selector": {}}}])]),
            "spec.rules[0].sources[0].namespaces",
            "no namespaces unless type is Namespaces",
        ),
        (
            (
                ["spec", "rules"],
                [rule([{"type": "Authenticated", "authenticated": {"trustDomains": ["Bad!"]}}])],
            ),
            "spec.rules[0].sources[0].authenticated.trustDomains[0]",
            "a trust domain name",
        ),
        (
            (["spec", "targetRefs"], [{"kind": "Pod", "selector": {}}]),
            "spec.targetRefs[0].group",
            "(required)",
        ),
        ((["spec", "action"], "AUDIT"), "spec.action", "one of 'ALLOW', 'DENY'"),
        ((["spec", "enforcementLevel"], "Application"), "spec.enforcementLevel", "'Network'"),
        ((["spec", "dryRun"], "yes please"), "spec.dryRun", "true or false"),
        (
            (["spec", "targetRefs", 0, "kind"], "Service"),
            "spec.targetRefs[0].kind",
            "one of 'Pod'",
        ),
        (
            (["spec", "targetRefs", 0, "selector", "matchLabels"], {"app": "a b"}),
            "spec.targetRefs[0].selector.matchLabels.app",
            "a label value",
        ),
        (
            (
                ["spec", "targetRefs", 0, "selector", "matchExpressions"],
                [{"key": "app", "operator": "In"}],
            ),
            "spec.targetRefs[0].selector.matchExpressions[0].values",
            "values non-empty for In and NotIn",
        ),
        ((["metadata", "name"], "Not_A_Name"), "metadata.name", "a resource name"),
        ((["apiVersion"], "authz.sigil.dev/v1"), "apiVersion", "'authz.sigil.dev/v1alpha1'"),
    ],
)
def test_namespaced_refusal_names_field_and_expectation(
    change: tuple[list[str | int], object], path: str, expected: str
) -> None:
    """A field out of schema is refused naming the file, the field path and what was expected."""
    error = _refusal(_with(ap("p", rules=[rule([anyone()])]), *change))
    assert error.file == "p.yaml"
    assert error.path == path
    assert expected in error.expected
    assert str(error).startswith(f"p.yaml: {path}: expected ")


@pytest.mark.parametrize(
    ("rules", "path"),
    [
        ([{"soruces": [spiffe("spiffe://example.org/web")]}], "spec.rules[0].soruces"),
        (
            [rule([sa("web")], ports=[5432]), {"networkAttributes": {"prots": [5432]}}],
            "spec.rules[1].networkAttributes.prots",
        ),
        (
            [rule([{"type": "SPIFFE", "spiffe": "spiffe://example.org/web", "x": 1}])],
            "spec.rules[0].sources[0].x",
        ),
    ],
)
def test_a_misspelled_field_is_refused_by_name(rules: list[Doc], path: str) -> None:
    """A misspelled field is refused as an unknown field at its path, never ignored into a wider rule."""
    error = _refusal(ap("p", rules=rules))
    assert isinstance(error, UnknownFieldError)
    assert error.path == path
    assert str(error).startswith(f"p.yaml: {path}: unknown field (the fields here are: ")


@pytest.mark.parametrize(
    ("doc", "path", "expected"),
    [
        (
            ap("p", action="DENY", rules=[rule([anyone()]), {}]),
            "spec.rules[1]",
            "sources, notSources or",
        ),
        (
            ap("p", rules=[{"networkAttributes": {}}]),
            "spec.rules[0].networkAttributes",
            "ports, portRanges, exceptPorts, exceptPortRanges, sourceCIDRs or exceptSourceCIDRs",
        ),
        (cap("c", rules=[{"action": "Allow"}]), "spec.rules[0]", "sources, notSources or"),
    ],
)
def test_a_rule_naming_no_criterion_is_refused(doc: Doc, path: str, expected: str) -> None:
    """A rule with no criterion left (what an API server makes of a misspelled one) is refused, not read as
    'every peer'."""
    error = _refusal(doc)
    assert error.path == path
    assert expected in error.expected


def test_type_any_is_the_written_form_of_every_peer() -> None:
    """``sources: [{type: Any}]`` matches every peer, with or without an SVID, on every port."""
    result = parse_file(dump(ap("p", action="DENY", rules=[rule([anyone()])])), file="p.yaml")
    ((policy,), ()) = (result.policies, result.errors)
    assert isinstance(policy, AuthorizationPolicy)
    (only,) = policy.rules
    assert (only.sources, only.ports) == (None, None)


@pytest.mark.parametrize(
    ("doc", "path", "expected"),
    [
        (
            cap(
                "c",
                tier="Baseline",
                rules=[rule([anyone()], action="Allow"), rule([anyone()], action="Pass")],
            ),
            "spec.rules[1].action",
            "Pass is allowed only in the Admin tier",
        ),
        (cap("c", rules=[rule([anyone()])]), "spec.rules[0].action", "(required)"),
        (
            cap("c", rules=[rule([sa("web")], action="Deny")]),
            "spec.rules[0].sources[0].serviceAccount.namespace",
            "(required)",
        ),
        (cap("c", priority=-1), "spec.priority", "an integer from 0 to 1000"),
        (cap("c", tier="Platform"), "spec.tier", "one of 'Admin', 'Baseline'"),
        (
            _with(cap("c"), ["metadata", "namespace"], "shop"),
            "metadata.namespace",
            "cluster-scoped",
        ),
        (_with(ap("p"), ["metadata"], {"name": "p"}), "metadata.namespace", "namespaced"),
        (
            {"kind": "NetworkPolicy"},
            "kind",
            "one of 'AuthorizationPolicy', 'ClusterAuthorizationPolicy'",
        ),
    ],
)
def test_other_refusals(doc: Doc, path: str, expected: str) -> None:
    """Cluster policy rules, scope and kind are held to the schema with the same precision."""
    error = _refusal(doc)
    assert error.path == path
    assert expected in error.expected


def test_broken_yaml_names_line_and_column() -> None:
    """A file that is not YAML is refused with its name and the position of the problem."""
    result = parse_file("kind: AuthorizationPolicy\nspec: [unclosed\n", file="bad.yaml")
    (error,) = result.errors
    assert isinstance(error, PolicyYamlError)
    assert error.file == "bad.yaml"
    assert error.line is not None
    assert "bad.yaml: expected valid YAML" in str(error)


def test_bad_document_does_not_take_down_the_others() -> None:
    """In a multi-document file, the good policies load and the refusal names the bad document."""
    broken = _with(ap("broken"), ["spec", "action"], "MAYBE")
    result = parse_file(dump(ap("one"), broken, ap("two")), file="many.yaml")
    assert sorted(p.name for p in result.policies) == ["one", "two"]
    (error,) = result.errors
    assert isinstance(error, PolicyError)
    assert error.document == 1
    assert "many.yaml (document 2): spec.action" in str(error)


def test_directory_load_isolates_bad_files(write_policies: Write) -> None:
    """A broken file is reported while every other file's policies come into force."""
    directory = write_policies({"a.yaml": dump(ap("a")), "b.yaml": "{{{", "c.yml": dump(cap("c"))})
    store = PolicyStore()
    report = store.load_directory(directory)
    assert sorted(p.name for p in store.current.policies) == ["a", "c"]
    assert [Path(e.file).name for e in report.errors if isinstance(e, PolicyError)] == ["b.yaml"]
    assert report.revision == 1


def test_last_good_version_kept_when_a_policy_breaks(write_policies: Write) -> None:
    """A reload that finds a policy broken keeps its last good version in force, and says so."""
    good = ap("web", rules=[rule([sa("web")])])
    directory = write_policies({"web.yaml": dump(good, ap("other", rules=[rule([anyone()])]))})
    store = PolicyStore()
    store.load_directory(directory)
    write_policies({"web.yaml": dump(_with(ap("web"), ["spec", "action"], "ALOW"), ap("other"))})
    report = store.load_directory(directory)
    assert not report.ok
    by_name = {p.name: p for p in store.current.policies}
    assert by_name["web"].rules[0].sources is not None  # the last good version
    assert by_name["other"].rules == ()  # the good neighbour's new version


def test_last_good_file_kept_when_it_stops_being_yaml(write_policies: Write) -> None:
    """A file that turns into broken YAML keeps everything it last held, at the same revision."""
    directory = write_policies({"p.yaml": dump(ap("a"), ap("b"))})
    store = PolicyStore()
    first = store.load_directory(directory)
    write_policies({"p.yaml": "spec: [oops"})
    report = store.load_directory(directory)
    assert (report.revision, report.changed) == (first.revision, False)
    assert sorted(p.name for p in store.current.policies) == ["a", "b"]


def test_each_accepted_change_gets_a_revision(write_policies: Write) -> None:
    """Revisions count accepted changes: a reload without changes keeps the number."""
    store = PolicyStore()
    directory = write_policies({"p.yaml": dump(ap("a"))})
    assert store.load_directory(directory).revision == 1
    assert store.load_directory(directory).revision == 1
    write_policies({"q.yaml": dump(ap("b"))})
    assert store.load_directory(directory).revision == 2
    (directory / "p.yaml").unlink()
    report = store.load_directory(directory)
    assert (report.revision, [p.name for p in store.current.policies]) == (3, ["b"])


def test_duplicate_policy_refused_in_later_file(write_policies: Write) -> None:
    """The same policy defined in two files is kept from the first file and refused in the second."""
    first, second = (
        ap("p", action="DENY", rules=[rule([anyone()])]),
        ap("p", rules=[rule([anyone()])]),
    )
    directory = write_policies({"a.yaml": dump(first), "b.yaml": dump(second)})
    store = PolicyStore()
    report = store.load_directory(directory)
    (policy,) = store.current.policies
    assert policy.rules[0].effect.value == "deny"
    (error,) = report.errors
    assert isinstance(error, PolicyError)
    assert (Path(error.file).name, error.path) == ("b.yaml", "metadata.name")


def test_missing_directory_changes_nothing(write_policies: Write, tmp_path: Path) -> None:
    """A policy directory that vanished is an error, never "every policy was deleted"."""
    directory = write_policies({"a.yaml": dump(ap("a"))})
    store = PolicyStore()
    store.load_directory(directory)
    with pytest.raises(PolicySourceError):
        store.load_directory(tmp_path / "gone")
    assert [p.name for p in store.current.policies] == ["a"]


def test_hidden_and_foreign_files_are_ignored(write_policies: Write) -> None:
    """Hidden entries (a ConfigMap mount's ..data) and non-YAML files are not read."""
    directory = write_policies(
        {".hidden.yaml": "{{{", "README.md": "# notes", "a.yaml": dump(ap("a"))}
    )
    report = PolicyStore().load_directory(directory)
    assert report.ok


def test_empty_documents_are_skipped() -> None:
    """Stray ``---`` separators and comments do not count as documents."""
    text = "---\n# a comment\n---\n" + yaml.safe_dump(ap("a")) + "---\n"
    result = parse_file(text, file="p.yaml")
    assert [p.name for p in result.policies] == ["a"]
    assert result.errors == ()
