"""Istio's documented semantics on plain TCP, one case each, decided by the reference evaluator.

These pin the reference (tests/sigil_testing/istio_reference.py) to the facts of istio.io's security concepts
and istio/istio's authz model, so that the translation can then be checked against it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from enforcer.istio_docs import Doc, istio_ap, op, src, when
from sigil_testing.istio_reference import Connection, Mesh, UnmodelledError, Workload, decide

LOCAL = "example.org"
WEB = "spiffe://example.org/ns/shop/sa/web"
MESH = Mesh(trust_domain=LOCAL, aliases=("old.org",))


@dataclass(frozen=True)
class Case:
    """One connection to ``shop``'s ``app=db`` pod on port 5432 from 10.0.0.5, and Istio's answer."""

    id: str
    policies: list[Doc]
    peer: str | None
    allowed: bool
    port: int = 5432
    address: str = "10.0.0.5"
    namespace: str = "shop"
    labels: dict[str, str] = field(default_factory=lambda: {"app": "db"})


ALLOW_WEB = istio_ap(
    "allow-web", rules=[{"from": [src(principals=["example.org/ns/shop/sa/web"])]}]
)

CASES = [
    # Evaluation order and idioms.
    Case("no-policy-allows", [], None, True),
    Case("allow-nothing-denies-everyone", [istio_ap("nothing", spec={})], WEB, False),
    Case("allow-all-admits-plaintext", [istio_ap("all", rules=[{}])], None, True),
    Case(
        "deny-all-beats-allow-all",
        [istio_ap("all", rules=[{}]), istio_ap("d", action="DENY", rules=[{}])],
        WEB,
        False,
    ),
    Case("deny-without-rules-matches-nothing", [istio_ap("d", action="DENY")], WEB, True),
    Case(
        "deny-beats-matching-allow",
        [ALLOW_WEB, istio_ap("d", action="DENY", rules=[{"from": [src(namespaces=["shop"])]}])],
        WEB,
        False,
    ),
    Case(
        "allow-present-unmatched-denies",
        [ALLOW_WEB],
        "spiffe://example.org/ns/shop/sa/other",
        False,
    ),
    Case(
        "allow-for-other-pods-does-not-apply",
        [istio_ap("x", match={"app": "cache"}, rules=[])],
        WEB,
        True,
    ),
    Case(
        "allow-from-other-namespace-does-not-apply",
        [istio_ap("x", namespace="other", spec={})],
        WEB,
        True,
    ),
    Case("dry-run-policy-changes-nothing", [istio_ap("nothing", spec={}, dry_run=True)], WEB, True),
    Case("audit-policy-changes-nothing", [istio_ap("a", action="AUDIT", rules=[{}])], WEB, True),
    Case("v1beta1-reads-the-same", [istio_ap("nothing", spec={}, version="v1beta1")], WEB, False),
    # Principals.
    Case("principal-without-scheme-matches", [ALLOW_WEB], WEB, True),
    Case(
        "principal-with-scheme-never-matches",
        [istio_ap("p", rules=[{"from": [src(principals=[WEB])]}])],
        WEB,
        False,
    ),
    Case(
        "principal-presence-needs-an-svid",
        [istio_ap("p", rules=[{"from": [src(principals=["*"])]}])],
        None,
        False,
    ),
    Case(
        "principal-presence-any-domain",
        [istio_ap("p", rules=[{"from": [src(principals=["*"])]}])],
        "spiffe://other.org/x",
        True,
    ),
    Case(
        "principal-prefix",
        [istio_ap("p", rules=[{"from": [src(principals=["example.org/ns/shop/*"])]}])],
        WEB,
        True,
    ),
    Case(
        "principal-suffix",
        [istio_ap("p", rules=[{"from": [src(principals=["*/sa/web"])]}])],
        "spiffe://other.org/ns/x/sa/web",
        True,
    ),
    Case(
        "principal-suffix-is-literal",
        [istio_ap("p", rules=[{"from": [src(principals=["*/sa/web"])]}])],
        "spiffe://other.org/ns/x/sa/webx",
        False,
    ),
    Case(
        "not-principals-presence-admits-plaintext",
        [istio_ap("p", rules=[{"from": [src(notPrincipals=["*"])]}])],
        None,
        True,
    ),
    Case(
        "not-principals-excludes",
        [istio_ap("p", rules=[{"from": [src(notPrincipals=["example.org/ns/shop/sa/web"])]}])],
        WEB,
        False,
    ),
    # Trust domains and aliases.
    Case(
        "cluster-local-means-the-local-domain",
        [istio_ap("p", rules=[{"from": [src(principals=["cluster.local/ns/shop/sa/web"])]}])],
        WEB,
        True,
    ),
    Case(
        "cluster-local-means-each-alias",
        [istio_ap("p", rules=[{"from": [src(principals=["cluster.local/ns/shop/sa/web"])]}])],
        "spiffe://old.org/ns/shop/sa/web",
        True,
    ),
    Case(
        "alias-means-the-local-domain",
        [istio_ap("p", rules=[{"from": [src(principals=["old.org/ns/shop/sa/web"])]}])],
        WEB,
        True,
    ),
    Case(
        "foreign-domain-stays-itself",
        [istio_ap("p", rules=[{"from": [src(principals=["far.org/ns/shop/sa/web"])]}])],
        WEB,
        False,
    ),
    Case(
        "short-principal-keeps-cluster-local",
        [istio_ap("p", rules=[{"from": [src(principals=["cluster.local/ns/shop*"])]}])],
        WEB,
        False,
    ),
    Case(
        "trust-domains-field",
        [istio_ap("p", rules=[{"from": [src(trustDomains=["cluster.local"])]}])],
        "spiffe://old.org/x",
        True,
    ),
    Case(
        "not-trust-domains",
        [istio_ap("p", rules=[{"from": [src(notTrustDomains=["far.org"])]}])],
        "spiffe://far.org/x",
        False,
    ),
    # Namespaces and service accounts.
    Case(
        "namespace-any-domain",
        [istio_ap("p", rules=[{"from": [src(namespaces=["shop"])]}])],
        "spiffe://far.org/ns/shop/sa/x",
        True,
    ),
    Case(
        "namespace-extra-segments",
        [istio_ap("p", rules=[{"from": [src(namespaces=["shop"])]}])],
        "spiffe://far.org/c/1/ns/shop/sa/x",
        True,
    ),
    Case(
        "namespace-needs-an-svid",
        [istio_ap("p", rules=[{"from": [src(namespaces=["shop"])]}])],
        None,
        False,
    ),
    Case(
        "namespace-wildcard",
        [istio_ap("p", rules=[{"from": [src(namespaces=["sh*"])]}])],
        WEB,
        True,
    ),
    Case(
        "service-account",
        [istio_ap("p", rules=[{"from": [src(serviceAccounts=["shop/web"])]}])],
        "spiffe://far.org/ns/shop/sa/web",
        True,
    ),
    Case(
        "service-account-own-namespace",
        [istio_ap("p", rules=[{"from": [src(serviceAccounts=["web"])]}])],
        WEB,
        True,
    ),
    Case(
        "service-account-extra-segments",
        [istio_ap("p", rules=[{"from": [src(serviceAccounts=["shop/web"])]}])],
        "spiffe://far.org/ns/shop/c/1/sa/web/v/2",
        True,
    ),
    Case(
        "service-account-no-junk-suffix",
        [istio_ap("p", rules=[{"from": [src(serviceAccounts=["shop/web"])]}])],
        "spiffe://far.org/ns/shop/sa/web-x",
        False,
    ),
    Case(
        "source-fields-are-and-ed",
        [istio_ap("p", rules=[{"from": [src(namespaces=["shop"], principals=["*/sa/admin"])]}])],
        WEB,
        False,
    ),
    Case(
        "sources-are-or-ed",
        [istio_ap("p", rules=[{"from": [src(namespaces=["ops"]), src(principals=["*/sa/web"])]}])],
        WEB,
        True,
    ),
    # Addresses and ports.
    Case(
        "ip-blocks", [istio_ap("p", rules=[{"from": [src(ipBlocks=["10.0.0.0/24"])]}])], None, True
    ),
    Case(
        "not-ip-blocks",
        [istio_ap("p", rules=[{"from": [src(notIpBlocks=["10.0.0.5"])]}])],
        None,
        False,
    ),
    Case("ports-other-port", [istio_ap("p", rules=[{"to": [op(ports=["80"])]}])], WEB, False),
    Case("not-ports", [istio_ap("p", rules=[{"to": [op(notPorts=["5432"])]}])], WEB, False),
    Case(
        "when-destination-port",
        [istio_ap("p", rules=[{"when": [when("destination.port", ["5432"])]}])],
        WEB,
        True,
    ),
    Case(
        "when-source-ip-not-values",
        [istio_ap("p", rules=[{"when": [when("source.ip", not_values=["10.0.0.0/8"])]}])],
        WEB,
        False,
    ),
    Case(
        "when-source-namespace-and-port",
        [
            istio_ap(
                "p",
                rules=[
                    {"when": [when("source.namespace", ["shop"]), when("destination.port", ["80"])]}
                ],
            )
        ],
        WEB,
        False,
    ),
    # Root namespace.
    Case(
        "root-deny-applies-everywhere",
        [
            istio_ap("d", namespace="istio-system", action="DENY", rules=[{}]),
            istio_ap("all", rules=[{}]),
        ],
        WEB,
        False,
    ),
    Case(
        "root-allow-adds-to-namespace-allow",
        [
            istio_ap(
                "r", namespace="istio-system", rules=[{"from": [src(principals=["*/sa/web"])]}]
            ),
            istio_ap("nothing", spec={}),
        ],
        WEB,
        True,
    ),
    Case(
        "root-selector-matches-pods-anywhere",
        [istio_ap("r", namespace="istio-system", match={"app": "db"}, spec=None, rules=[])],
        WEB,
        False,
    ),
    # HTTP-only fields on TCP.
    Case(
        "allow-rule-with-methods-never-matches",
        [istio_ap("p", rules=[{"to": [op(methods=["GET"])]}])],
        WEB,
        False,
    ),
    Case(
        "allow-rule-with-request-key-never-matches",
        [istio_ap("p", rules=[{"when": [when("request.headers[x]", ["a"])]}])],
        WEB,
        False,
    ),
    Case(
        "other-allow-rule-still-matches",
        [istio_ap("p", rules=[{"to": [op(paths=["/a"])]}, {}])],
        WEB,
        True,
    ),
    Case(
        "deny-rule-ignores-methods",
        [istio_ap("d", action="DENY", rules=[{"to": [op(methods=["GET"])]}])],
        WEB,
        False,
    ),
    Case(
        "deny-rule-keeps-ports",
        [istio_ap("d", action="DENY", rules=[{"to": [op(methods=["GET"], ports=["80"])]}])],
        WEB,
        True,
    ),
    Case(
        "deny-rule-ignores-request-principals",
        [istio_ap("d", action="DENY", rules=[{"from": [src(requestPrincipals=["*"])]}])],
        None,
        False,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_istio_semantics(case: Case) -> None:
    """The reference decides each documented case as Istio does."""
    verdict = decide(
        case.policies,
        Workload(case.namespace, case.labels),
        Connection(case.peer, case.address, case.port),
        MESH,
    )
    assert verdict.allowed is case.allowed, verdict.reason


def test_custom_is_not_modelled() -> None:
    """A CUSTOM policy asks an external authorizer, which the reference refuses to guess."""
    with pytest.raises(UnmodelledError):
        decide(
            [istio_ap("c", action="CUSTOM", rules=[{}])],
            Workload("shop"),
            Connection(None, "10.0.0.1", 80),
            MESH,
        )
