"""``sigil-enforcer diff``: two policy sets compared on every distinct case; equivalent sets exit 0, different ones
exit 1 with each case that differs (and that case really decides differently), bad input exits 2."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from enforcer.policy_docs import Doc, ap, dump, network_rule, rule, sa, spiffe_pattern
from enforcer.test_properties import LOCAL, NAMESPACE_LABELS, _index, _policy_sets, _requests
from hypothesis import given, settings
from hypothesis import strategies as st

from sigil.ca.spiffe_id import TrustDomain
from sigil.enforcer.cli import main
from sigil.enforcer.policy import (
    AuthorizationPolicy,
    ClusterAuthorizationPolicy,
    Effect,
    Policy,
    PolicyIndex,
    Target,
    parse_policy,
)
from sigil.enforcer.policy.diff import Difference, differences

WEB = "spiffe://example.org/ns/shop/sa/web"


def _write(tmp_path: Path, name: str, *docs: Doc) -> Path:
    directory = tmp_path / name
    directory.mkdir()
    (directory / "p.yaml").write_text(dump(*docs), encoding="utf-8")
    return directory


def test_equivalent_spellings_exit_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A ServiceAccount source and the SPIFFE pattern naming the same ID decide alike: exit 0."""
    a = _write(tmp_path, "a", ap("db", rules=[rule([sa("web")])]))
    b = _write(
        tmp_path,
        "b",
        ap("db", rules=[rule([spiffe_pattern("spiffe://example.org/ns/shop/sa/web")])]),
    )
    assert main(["diff", str(a), str(b), "--trust-domain", "example.org"]) == 0
    assert capsys.readouterr().out.startswith("equivalent")


def test_a_different_port_exits_1_naming_the_case(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Allowing web on 5432 against allowing it on every port but 8080 differs on 8080 and elsewhere."""
    a = _write(tmp_path, "a", ap("db", rules=[rule([sa("web")], ports=[5432])]))
    b = _write(tmp_path, "b", ap("db", rules=[network_rule([sa("web")], exceptPorts=[8080])]))
    assert main(["diff", str(a), str(b), "--trust-domain", "example.org", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert not report["equivalent"]
    ports = {d["case"]["port"] for d in report["differences"]}
    assert 8080 not in ports  # both deny web there
    assert 1 in ports  # "other ports": B allows web, A does not
    first = report["differences"][0]
    assert {first["a"]["decision"], first["b"]["decision"]} == {"allowed", "denied"}
    assert first["b"]["origin"].startswith(f"file {tmp_path}/b/p.yaml")


def test_a_mesh_policy_against_per_namespace_copies(tmp_path: Path) -> None:
    """A Mesh-scoped DENY differs from a copy in one namespace: in every other namespace."""
    mesh = ap(
        "deny", namespace="root", action="DENY", scope="Mesh", rules=[rule([sa("web", "shop")])]
    )
    local = ap("deny", namespace="shop", action="DENY", rules=[rule([sa("web", "shop")])])
    found = differences(
        [parse_policy(mesh)], [parse_policy(local)], trust_domain=TrustDomain("example.org")
    )
    assert found
    assert {d.case.namespace for d in found} >= {"root"}
    assert "shop" not in {d.case.namespace for d in found}


def test_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A refused document on either side, or a path that is not there, is bad input."""
    a = _write(tmp_path, "a", ap("db", rules=[rule([sa("web")])]))
    broken = ap("db", rules=[rule([sa("web")])])
    broken["spec"]["action"] = "MAYBE"
    b = _write(tmp_path, "b", broken)
    assert main(["diff", str(a), str(b)]) == 2
    assert "spec.action" in capsys.readouterr().err
    assert main(["diff", str(a), str(tmp_path / "missing")]) == 2


# --------------------------------------------------------------------------- properties


def _decides_differently(a: list[Policy], b: list[Policy], difference: Difference) -> bool:
    """The case decided as ``check`` would, given the case's pod, namespace labels, peer, port, address."""
    case = difference.case
    namespaces = {**NAMESPACE_LABELS, case.namespace: dict(case.namespace_labels)}
    a_index, b_index = (PolicyIndex(p, trust_domain=LOCAL, namespaces=namespaces) for p in (a, b))
    target = Target(case.namespace, case.labels)
    peer = case.peer.representative
    da = a_index.decide(peer, target, case.port, address=case.address)
    db = b_index.decide(peer, target, case.port, address=case.address)
    return da.allowed != db.allowed


@st.composite
def _changed(draw: st.DrawFn, policies: list[Policy]) -> list[Policy]:
    """``policies`` with one rule changed: dropped, or (in a cluster policy) its action flipped."""
    candidates = [n for n, p in enumerate(policies) if p.rules]
    if not candidates:
        return policies
    number = draw(st.sampled_from(candidates))
    policy = policies[number]
    at = draw(st.integers(0, len(policy.rules) - 1))
    rules = list(policy.rules)
    if isinstance(policy, ClusterAuthorizationPolicy) and draw(st.booleans()):
        flipped = Effect.DENY if rules[at].effect is Effect.ALLOW else Effect.ALLOW
        rules[at] = replace(rules[at], effect=flipped)
    else:
        del rules[at]
    changed: AuthorizationPolicy | ClusterAuthorizationPolicy = replace(policy, rules=tuple(rules))
    return [*policies[:number], changed, *policies[number + 1 :]]


# 25 examples each: an example's diff enumerates every distinct case of both sets, from 4 ms to 4 s (under
# coverage four times that), so 60 examples came near the 120 s per-test timeout, whose signal then hung the run
# inside coverage's tracer lock.
@settings(max_examples=25, deadline=None)
@given(_policy_sets)
def test_a_set_never_differs_from_itself(policies: list[Policy]) -> None:
    """diff of a set with itself finds nothing."""
    assert differences(policies, policies, trust_domain=LOCAL, namespaces=NAMESPACE_LABELS) == []


@settings(max_examples=25, deadline=None)
@given(st.data(), _policy_sets, st.lists(_requests, min_size=1, max_size=8))
def test_a_changed_rule_that_changes_a_decision_is_found(
    data: st.DataObject, policies: list[Policy], requests: list[tuple[object, ...]]
) -> None:
    """When a changed rule changes some decision, diff reports differences, and each case it reports decides
    differently under ``check``."""
    changed = data.draw(_changed(policies))
    a, b = _index(policies), _index(changed)
    changes_something = any(
        a.decide(peer, Target(ns, labels), port, address=address).allowed  # type: ignore[arg-type]
        != b.decide(peer, Target(ns, labels), port, address=address).allowed  # type: ignore[arg-type]
        for peer, ns, labels, port, address in requests
    )
    found = differences(policies, changed, trust_domain=LOCAL, namespaces=NAMESPACE_LABELS)
    if changes_something:
        assert found
    for difference in found:
        assert _decides_differently(policies, changed, difference)
