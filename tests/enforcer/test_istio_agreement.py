"""The translation of Istio policy decides every connection as Istio does: on a fixed case grid, and on every
case ``sigil-enforcer diff`` enumerates for the translation.

Istio's side is the reference evaluator (tests/sigil_testing/istio_reference.py); Sigil's side parses the
translated documents and asks the compiled index, as ``sigil-enforcer check`` does (enforcer/istio_agreement.py).
The two case sets complement each other: diff's cases come from the translation's own rules, so they find a
translated rule that decides wrongly, and the grid's fixed peers find a case a translation forgot to name.
"""

from __future__ import annotations

from typing import Any

import pytest
from enforcer.istio_agreement import diff_disagreements, disagreements, translate
from enforcer.istio_docs import Doc, istio_ap, op, src, when
from enforcer.test_istio_reference import CASES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sigil.enforcer.policy.dialects.base import Exactness

SCENARIOS: dict[str, list[Doc]] = {case.id: case.policies for case in CASES}
SCENARIOS.update(
    {
        "namespace-tier-with-root-and-selectors": [
            istio_ap(
                "root-deny-ssh",
                namespace="istio-system",
                action="DENY",
                rules=[{"to": [op(ports=["22"])]}],
            ),
            istio_ap(
                "root-allow-mesh",
                namespace="istio-system",
                rules=[{"from": [src(principals=["*"])]}],
            ),
            istio_ap(
                "db-from-web",
                match={"app": "db"},
                rules=[{"from": [src(serviceAccounts=["web"])], "to": [op(ports=["5432"])]}],
            ),
            istio_ap("ops-nothing", namespace="ops", spec={}),
        ],
        "negations-everywhere": [
            istio_ap(
                "p",
                rules=[
                    {
                        "from": [
                            src(
                                namespaces=["*"],
                                notNamespaces=["ops"],
                                notIpBlocks=["192.168.0.0/16"],
                            )
                        ],
                        "to": [op(notPorts=["22", "80"])],
                        "when": [when("source.principal", not_values=["*/sa/web-x"])],
                    }
                ],
            ),
        ],
        "http-deny-scoped-to-a-port": [
            istio_ap("all", rules=[{}]),
            istio_ap("d", action="DENY", rules=[{"to": [op(methods=["DELETE"], ports=["80"])]}]),
        ],
        "trust-domain-named-ns": [istio_ap("p", rules=[{"from": [src(namespaces=["shop"])]}])],
        "prefix-namespaces": [
            istio_ap(
                "p", rules=[{"from": [src(namespaces=["prod-*"]), src(trustDomains=["old.org"])]}]
            )
        ],
        "dry-run-deny-beside-allow": [
            istio_ap("d", action="DENY", rules=[{}], dry_run=True),
            istio_ap("a", rules=[{"from": [src(principals=["cluster.local/ns/shop/sa/web"])]}]),
        ],
    }
)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_translation_agrees_with_istio(name: str) -> None:
    """Sigil decides every grid connection as Istio does under the translated scenario."""
    policies = SCENARIOS[name]
    translation = translate(policies)
    assert not [f for f in translation.findings if f.exactness is Exactness.REFUSED]
    assert list(disagreements(policies)) == []


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_translation_agrees_with_istio_on_diff_cases(name: str) -> None:
    """On every case ``diff`` enumerates for the translated scenario, Sigil decides as Istio does."""
    assert diff_disagreements(SCENARIOS[name]) == []


# --------------------------------------------------------------------------- generated policy sets

_PRINCIPALS = st.sampled_from(
    [
        "cluster.local/ns/shop/sa/web",
        "example.org/ns/ops/sa/admin",
        "old.org/ns/shop/sa/web",
        "far.org/ns/shop/sa/web",
        "*",
        "*/sa/web",
        "*/ns/shop/sa/web",
        "example.org/ns/shop/*",
        "cluster.local/ns/shop/sa/*",
        "far.org/*",
        "spiffe://example.org/ns/shop/sa/web",
        "*/sa/we b",
        "Example.org/*",
    ]
)
_NAMESPACES = st.sampled_from(["shop", "ops", "prod-*", "*", "sh*"])
_ACCOUNTS = st.sampled_from(["shop/web", "ops/admin", "web", "shop/web-x"])
_DOMAINS = st.sampled_from(["cluster.local", "far.org", "old.org", "example.org"])
_BLOCKS = st.sampled_from(["10.0.0.0/8", "10.1.0.0/16", "10.0.0.5", "192.168.1.1", "2001:db8::/32"])
_PORTS = st.sampled_from(["22", "80", "443", "5432", "8080"])


def _few(values: st.SearchStrategy[str]) -> st.SearchStrategy[list[str]]:
    return st.lists(values, min_size=1, max_size=2, unique=True)


def _fields(options: dict[str, st.SearchStrategy[list[str]]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(sorted(options)), st.just([]), max_size=3).flatmap(
        lambda chosen: st.fixed_dictionaries({k: options[k] for k in chosen})
    )


_SOURCE = _fields(
    {
        "principals": _few(_PRINCIPALS),
        "notPrincipals": _few(_PRINCIPALS),
        "namespaces": _few(_NAMESPACES),
        "notNamespaces": _few(_NAMESPACES),
        "serviceAccounts": _few(_ACCOUNTS),
        "notServiceAccounts": _few(_ACCOUNTS),
        "trustDomains": _few(_DOMAINS),
        "notTrustDomains": _few(_DOMAINS),
        "ipBlocks": _few(_BLOCKS),
        "notIpBlocks": _few(_BLOCKS),
        "requestPrincipals": st.just(["*"]),
    }
)
_OPERATION = _fields(
    {
        "ports": _few(_PORTS),
        "notPorts": _few(_PORTS),
        "methods": st.just(["GET"]),
        "paths": st.just(["/x"]),
    }
)
_WHEN = st.one_of(
    st.builds(lambda v: when("source.ip", v), _few(_BLOCKS)),
    st.builds(lambda v: when("source.ip", not_values=v), _few(_BLOCKS)),
    st.builds(lambda v: when("source.namespace", v), _few(_NAMESPACES)),
    st.builds(lambda v: when("source.principal", not_values=v), _few(_PRINCIPALS)),
    st.builds(lambda v: when("destination.port", v), _few(_PORTS)),
    st.just(when("request.headers[x-user]", ["a"])),
)
_RULE = st.fixed_dictionaries(
    {},
    optional={
        "from": st.lists(_SOURCE.map(lambda s: {"source": s}), max_size=2),
        "to": st.lists(_OPERATION.map(lambda o: {"operation": o}), max_size=2),
        "when": st.lists(_WHEN, max_size=2),
    },
)


@st.composite
def _policy(draw: st.DrawFn, number: int) -> Doc:
    rules = draw(st.one_of(st.none(), st.lists(_RULE, max_size=3)))
    return istio_ap(
        f"p{number}",
        namespace=draw(st.sampled_from(["shop", "ops", "istio-system"])),
        action=draw(st.sampled_from([None, "ALLOW", "DENY", "DENY", "AUDIT"])),
        match=draw(st.sampled_from([None, {"app": "db"}, {"app": "cache"}])),
        rules=rules,
        dry_run=draw(st.sampled_from([False, False, False, True])),
    )


_POLICY_SETS = st.integers(min_value=1, max_value=4).flatmap(
    lambda n: st.tuples(*(_policy(i) for i in range(n))).map(list)
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_POLICY_SETS)
def test_exact_translations_decide_as_istio(policies: list[Doc]) -> None:
    """Whenever the report says the translation is exact, Sigil and Istio agree on every grid connection.

    Istio's TCP treatment of HTTP-only fields and AUDIT are reported as approximate but keep the TCP decision,
    so every translation without a refusal is held to the same standard.
    """
    translation = translate(policies)
    if any(f.exactness is Exactness.REFUSED for f in translation.findings):
        assert not translation.exact
        return
    assert diff_disagreements(policies) == []
    found = list(
        disagreements(
            policies, ports=(22, 443, 5432), addresses=("10.0.0.5", "192.168.1.1", "2001:db8::1")
        )
    )
    assert found == [], found[:3]
