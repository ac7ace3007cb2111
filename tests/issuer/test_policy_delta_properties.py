"""Deltas of the policy feed, as properties: over any sequence of changes, the delta from any kept set applied to
that set gives the set the issuer answers whole, and a delta that was tampered with is never taken."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest
from enforcer.policy_docs import ap, cap, rule, sa
from hypothesis import given, settings
from hypothesis import strategies as st

from sigil.enforcer.policy import judge
from sigil.enforcer.policy.schema import Where
from sigil.issuer.agentapi import contract
from sigil.issuer.client import PolicyDeltaError, PolicyUpdate
from sigil.issuer.client.policy_delta import apply_delta
from sigil.issuer.policies.history import PublishedSet, delta_body

Doc = dict[str, Any]
State = tuple[dict[str, tuple[Doc, Doc | None]], dict[str, dict[str, str]]]

_NAMES = [f"p{n}" for n in range(6)]
_NAMESPACES = ["shop", "web", "db"]

_put = st.tuples(
    st.just("put"),
    st.sampled_from(_NAMES),
    st.integers(1, 4),  # the port, so a put may also leave the document as it was
    st.booleans(),  # a cluster policy or a namespaced one
)
_origin = st.tuples(st.just("origin"), st.sampled_from(_NAMES), st.integers(0, 2))
_remove = st.tuples(st.just("remove"), st.sampled_from(_NAMES))
_label = st.tuples(st.just("label"), st.sampled_from(_NAMESPACES), st.sampled_from(["a", "b"]))
_unlabel = st.tuples(st.just("unlabel"), st.sampled_from(_NAMESPACES))
_steps = st.lists(st.one_of(_put, _origin, _remove, _label, _unlabel), min_size=1, max_size=12)


def _document(name: str, port: int, cluster: bool) -> Doc:
    rules = [rule([sa("web", "shop")], ports=[port])]
    if cluster:
        return cap(name, rules=[{**rules[0], "action": "Allow"}])
    return ap(name, rules=[rule([sa("web")], ports=[port])])


def _step(state: State, step: tuple[Any, ...]) -> State:
    policies, namespaces = dict(state[0]), {ns: dict(labels) for ns, labels in state[1].items()}
    match step:
        case ("put", name, port, cluster):
            # One name is one policy: a cluster and a namespaced policy of the same name are two keys.
            policies[name] = (_document(name, port, cluster), policies.get(name, ({}, None))[1])
        case ("origin", name, document) if name in policies:
            origin = {"kind": "file", "name": "/p.yaml", "document": document}
            policies[name] = (policies[name][0], {**origin, "generation": None, "revision": None})
        case ("remove", name):
            policies.pop(name, None)
        case ("label", ns, value):
            namespaces[ns] = {"kubernetes.io/metadata.name": ns, "team": value}
        case ("unlabel", ns):
            namespaces.pop(ns, None)
    return policies, namespaces


def _published(revision: int, state: State) -> tuple[PublishedSet, bytes]:
    """The set as the issuer's feed publishes it, and its whole body."""
    policies, namespaces = state
    ordered = sorted(policies.values(), key=lambda entry: json.dumps(entry[0], sort_keys=True))
    judged = judge(((doc, Where("t", n)) for n, (doc, _) in enumerate(ordered)), source="t")
    assert not judged.errors
    origins = ["null" if o is None else json.dumps(o, sort_keys=True) for _, o in ordered]
    texts = {a.key: (a.canonical, o) for a, o in zip(judged.accepted, origins, strict=True)}
    digest = contract.policy_set_digest((text for text, _ in texts.values()), namespaces)
    head = {"revision": revision, "digest": digest, "namespaces": namespaces}
    body = contract.policy_response_body(head, (a.canonical for a in judged.accepted), origins)
    return PublishedSet(revision, digest, texts, namespaces), body


def _parse(body: bytes) -> PolicyUpdate:
    return PolicyUpdate.parse(cast(contract.PolicyResponse, json.loads(body)))


def _content(update: PolicyUpdate) -> tuple[object, ...]:
    return (
        update.revision,
        update.digest,
        sorted(accepted.canonical for accepted in update.accepted),
        sorted(update.origins.items()),
        update.namespaces,
    )


@settings(max_examples=60, deadline=None)
@given(_steps, st.data())
def test_a_delta_from_any_kept_set_makes_the_whole_set(
    steps: list[tuple[Any, ...]], data: st.DataObject
) -> None:
    """Applying the delta from an earlier set to that set gives what the whole body of the new set gives."""
    states: State = ({}, {})
    history = [_published(0, states)]
    for revision, step in enumerate(steps, start=1):
        states = _step(states, step)
        history.append(_published(revision, states))
    current, whole = history[-1]
    base, base_body = data.draw(st.sampled_from(history))
    held = _parse(base_body)
    assert held.held is not None
    delta = json.loads(delta_body(base, current))
    applied = apply_delta(held, delta)
    assert _content(applied) == _content(_parse(whole))
    assert applied.held is not None
    assert applied.held.texts == _parse(whole).held.texts  # type: ignore[union-attr]
    # And it is a base in turn: the next delta applies to it as to the whole body.
    assert _content(apply_delta(applied, json.loads(delta_body(current, current)))) == _content(
        applied
    )


@settings(max_examples=40, deadline=None)
@given(_steps, st.sampled_from(["drop_policy", "drop_removal", "drop_namespace", "stale_base"]))
def test_a_tampered_delta_is_never_taken(steps: list[tuple[Any, ...]], tamper: str) -> None:
    """A delta missing any part of the change, or from another base, fails rather than leaving a wrong set."""
    base_state: State = ({}, {})
    for step in steps[: len(steps) // 2]:
        base_state = _step(base_state, step)
    state = base_state
    for step in steps[len(steps) // 2 :]:
        state = _step(state, step)
    base, base_body = _published(1, base_state)
    current, _ = _published(2, state)
    delta = json.loads(delta_body(base, current))
    if tamper == "drop_policy" and delta["policies"]:
        del delta["policies"][0], delta["origins"][0]
    elif tamper == "drop_removal" and delta["removed"]:
        del delta["removed"][0]
    elif tamper == "drop_namespace" and (delta["namespaces"] or delta["removed_namespaces"]):
        delta["namespaces"], delta["removed_namespaces"] = {}, []
    elif tamper == "stale_base":
        delta["base_digest"] = "0" * 64
    else:
        return  # nothing of that part to tamper with in this change
    if (
        tamper == "drop_policy"
        and json.loads(delta_body(base, current))["policies"][0] in _parse(base_body).documents
    ):
        return  # the policy only had its origin moved: the digest does not cover provenance
    with pytest.raises(PolicyDeltaError):
        apply_delta(_parse(base_body), delta)
