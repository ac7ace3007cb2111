"""Policy YAML and CRD objects from outside: each document is accepted or refused with a PolicyError, never more.

The documents start as valid ``AuthorizationPolicy`` and ``ClusterAuthorizationPolicy`` resources (the CRDs'
objects have the same shape) and have members replaced by arbitrary JSON; the YAML files start valid and have their
bytes damaged. :func:`sigil.enforcer.policy.judge` is the one judge every reader goes through, so this is the
parser of the issuer's files, the admin API, the CRDs, the agent's mirror and the enforcer.
"""

from __future__ import annotations

import copy
from typing import Any

from enforcer.policy_docs import anyone, ap, authenticated, cap, dump, rule, sa, spiffe
from fuzz.budget import FUZZ
from fuzz.mangling import mangled
from hypothesis import example, given
from hypothesis import strategies as st

from sigil.enforcer.errors import PolicyError
from sigil.enforcer.policy import AcceptedPolicy, judge
from sigil.enforcer.policy.loader import parse_file
from sigil.enforcer.policy.schema import Where

_VALID = [
    ap(
        "web",
        match={"app": "web"},
        rules=[rule([sa("api"), spiffe("spiffe://example.org/x")], ports=[80])],
    ),
    cap(
        "guard",
        namespaces={"team": "a"},
        pods={"app": "db"},
        rules=[rule([anyone()], action="Deny")],
    ),
]
_FILE = dump(*_VALID)

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=16,
)
_WORDS = st.sampled_from(
    [
        "ALLOW",
        "DENY",
        "Allow",
        "Deny",
        "Pass",
        "Admin",
        "Baseline",
        "Any",
        "SPIFFE",
        "ServiceAccount",
        "Authenticated",
        "SameNamespace",
        "spiffe://",
        "Namespaces",
        "Pod",
        "",
        "*",
        "spiffe://example.org/*",
        "0.0.0.0/0",
        "::/0",
        "10.0.0.0/33",
        "80-70",
        "65536",
    ]
)


def _paths(value: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [here]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*here, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*here, index))
    return found


@st.composite
def _documents(draw: st.DrawFn) -> Any:
    document = copy.deepcopy(draw(st.sampled_from(_VALID)))
    for _ in range(draw(st.integers(1, 5))):
        path = draw(st.sampled_from(_paths(document)))
        if not path:
            return draw(_JSON)
        parent = document
        for step in path[:-1]:
            parent = parent[step]
        choice = draw(st.sampled_from(["replace", "delete", "word"]))
        if choice == "delete":
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(_WORDS if choice == "word" else _JSON)
    return document


def _judged(documents: list[Any]) -> None:
    result = judge(((d, Where("fuzz", i)) for i, d in enumerate(documents)), source="fuzz")
    assert len(result.outcomes) == len(documents)
    for outcome in result.outcomes:
        if isinstance(outcome, PolicyError):
            assert str(outcome)
            continue
        assert isinstance(outcome, AcceptedPolicy)
        # What was accepted is accepted again from its canonical document, as the agent and enforcer receive it.
        again = judge([(outcome.document, Where("again"))], source="again")
        assert [a.canonical for a in again.accepted] == [outcome.canonical]


@FUZZ
@given(st.lists(_documents(), min_size=1, max_size=3))
@example(
    [
        {
            "apiVersion": "authz.sigil.dev/v1alpha1",
            "kind": "AuthorizationPolicy",
            "metadata": [],
            "spec": {},
        }
    ]
)
# trustDomains: ["spiffe://"] once escaped the judge as InvalidSpiffeIdError instead of a PolicyError.
@example([ap("td", rules=[rule([authenticated("spiffe://")])])])
@example([ap("td", rules=[rule([authenticated("spiffe://example.org?q")])])])
@example(
    [{"kind": "ClusterAuthorizationPolicy", "metadata": {"name": 5}, "spec": {"priority": 1e308}}]
)
def test_damaged_policy_documents_are_accepted_or_refused(documents: list[Any]) -> None:
    """Valid policies with members replaced, deleted or set to keywords: each one accepted or a PolicyError."""
    _judged(documents)


@FUZZ
@given(mangled(_FILE.encode()))
@example(b"a: &x [*x]\n")
@example(b"&x [*x, *x]\n")
@example(b"- " * 2000 + b"x\n")
@example(b"[" * 5000)
@example(b"a: !!python/object:os.system ls\n")
@example(b"a: 2026-12-01\nb: !!binary aGk=\n")
def test_damaged_policy_yaml_is_a_result_never_an_exception(data: bytes) -> None:
    """Policy YAML with damaged bytes: parse_file returns a result (broken source or judged documents)."""
    text = data.decode("utf-8", "replace")
    result = parse_file(text, file="fuzz.yaml")
    if result.broken:
        assert result.errors
        assert all(str(error) for error in result.errors)
    for outcome in result.outcomes:
        assert isinstance(outcome, AcceptedPolicy | PolicyError)
