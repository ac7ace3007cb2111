"""The translation of Istio policy decides every connection as Istio does: on a fixed case grid, and on every
case ``sigil-enforcer diff`` enumerates for the translation.

Istio's side is the reference evaluator (tests/sigil_testing/istio_reference.py); Sigil's side parses the
translated documents and asks the compiled index, as ``sigil-enforcer check`` does (enforcer/istio_agreement.py).
The two case sets complement each other: diff's cases come from the translation's own rules, so they find a
translated rule that decides wrongly, and the grid's fixed peers find a case a translation forgot to name.
"""

from __future__ import annotations

import pytest
from enforcer.istio_agreement import diff_disagreements, disagreements, translate
from enforcer.istio_docs import Doc, istio_ap, op, src, when
from enforcer.istio_strategies import POLICY_SETS
from enforcer.test_istio_reference import CASES
from hypothesis import HealthCheck, given, settings

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


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(POLICY_SETS)
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
