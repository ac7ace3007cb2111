"""What the Istio dialect writes for each kind of Istio policy, and what it reports as approximated or refused."""

from __future__ import annotations

from typing import Any

import pytest
from enforcer.istio_docs import Doc, istio_ap, op, src, when
from hypothesis import given, settings
from hypothesis import strategies as st

from sigil.enforcer.policy import parse_policy
from sigil.enforcer.policy.dialects.base import (
    TRANSLATED_FROM,
    Exactness,
    SourcedDocument,
    TranslateOptions,
    Translation,
    dialect_for,
    dialect_named,
)
from sigil.enforcer.policy.dialects.istio import DIALECT

OPTIONS = TranslateOptions(trust_domain="example.org", trust_domain_aliases=("old.org",))


def translate(*documents: Doc, options: TranslateOptions = OPTIONS) -> Translation:
    """Translate ``documents`` as if read from one file; every document written must be a valid Sigil policy."""
    translation = DIALECT.translate(
        [SourcedDocument(d, f"policies.yaml#{i}") for i, d in enumerate(documents)], options
    )
    for translated in translation.documents:
        parse_policy(translated.document)
    return translation


def only_spec(translation: Translation) -> dict[str, Any]:
    """The spec of the one document translated."""
    assert len(translation.documents) == 1, translation
    return dict(translation.documents[0].document["spec"])


def rules_of(*rules: Doc, action: str | None = None) -> list[dict[str, Any]]:
    """The Sigil rules of one policy holding ``rules``."""
    return list(only_spec(translate(istio_ap("p", action=action, rules=list(rules))))["rules"])


def pattern(glob: str) -> Doc:
    """A SPIFFEPattern source."""
    return {"type": "SPIFFEPattern", "spiffePattern": glob}


def test_found_by_name_and_by_api_group() -> None:
    """The reader finds this dialect by the name ``import`` takes and by an Istio document's apiVersion."""
    assert dialect_named("istio") is DIALECT
    assert dialect_for(istio_ap("p")) is DIALECT
    assert DIALECT.name == "istio"


def test_allow_nothing_idiom() -> None:
    """``spec: {}`` becomes an ALLOW policy with no rules over every pod of the namespace, exactly."""
    translation = translate(istio_ap("nothing", spec={}))
    document = translation.documents[0].document
    assert document["apiVersion"] == "authz.sigil.dev/v1alpha1"
    assert document["metadata"]["name"] == "nothing"
    assert document["metadata"]["namespace"] == "shop"
    assert document["spec"] == {
        "targetRefs": [{"group": "", "kind": "Pod", "selector": {"matchLabels": {}}}],
        "action": "ALLOW",
        "enforcementLevel": "Network",
        "rules": [],
    }
    assert translation.exact
    assert translation.findings == ()


def test_deny_all_idiom_and_selector() -> None:
    """``action: DENY, rules: [{}]`` with a selector denies every peer of the selected pods."""
    spec = only_spec(translate(istio_ap("d", action="DENY", match={"app": "db"}, rules=[{}])))
    assert spec["action"] == "DENY"
    assert spec["targetRefs"][0]["selector"] == {"matchLabels": {"app": "db"}}
    assert spec["rules"] == [{"sources": [{"type": "Any"}]}]


def test_origin_annotation() -> None:
    """Each Sigil document names the Istio object it came from, in its annotation and in ``sources``."""
    translated = translate(istio_ap("p", rules=[{}])).documents[0]
    assert (
        translated.document["metadata"]["annotations"][TRANSLATED_FROM]
        == "istio AuthorizationPolicy shop/p"
    )
    assert translated.sources == ("istio AuthorizationPolicy shop/p",)


def test_root_namespace_policy_is_mesh_scoped() -> None:
    """A policy of the root namespace joins every namespace's tier; the root namespace is an option."""
    assert only_spec(translate(istio_ap("r", namespace="istio-system", spec={})))["scope"] == "Mesh"
    assert "scope" not in only_spec(translate(istio_ap("r", namespace="shop", spec={})))
    custom = TranslateOptions(root_namespace="mesh-root")
    assert (
        only_spec(translate(istio_ap("r", namespace="mesh-root", spec={}), options=custom))["scope"]
        == "Mesh"
    )


def test_dry_run_annotation() -> None:
    """``istio.io/dry-run: "true"`` becomes ``dryRun: true``, exactly."""
    translation = translate(istio_ap("p", rules=[{}], dry_run=True))
    assert only_spec(translation)["dryRun"] is True
    assert translation.exact


def test_audit_becomes_dry_run_deny() -> None:
    """AUDIT never changes a decision: a dry-run DENY policy, reported as approximate."""
    translation = translate(istio_ap("a", action="AUDIT", rules=[{}]))
    spec = only_spec(translation)
    assert (spec["action"], spec["dryRun"]) == ("DENY", True)
    assert [f.exactness for f in translation.findings] == [Exactness.APPROXIMATE]


@pytest.mark.parametrize(
    ("policy", "path", "words"),
    [
        (istio_ap("c", action="CUSTOM", rules=[{}]), "spec.action", "external authorizer"),
        (
            istio_ap("g", spec={"targetRefs": [{"kind": "Gateway", "name": "gw"}]}),
            "spec.targetRefs",
            "gateway",
        ),
        (istio_ap("x", action="MAYBE"), "spec.action", "'MAYBE'"),
        (istio_ap("x", rules=[{"to": [op(ports=["http"])]}]), "spec.rules[0]", "not a port number"),
        (
            istio_ap("x", rules=[{"from": [src(ipBlocks=["10.0.0.300"])]}]),
            "spec.rules[0]",
            "not an IP address",
        ),
        (
            istio_ap("x", rules=[{"when": [when("source.color", ["red"])]}]),
            "spec.rules[0]",
            "unknown attribute",
        ),
        (
            istio_ap("x", rules=[{"from": [src(principal=["a"])]}]),
            "spec.rules[0]",
            "unknown field 'principal'",
        ),
        (
            istio_ap("x", rules=[{"from": [src(serviceAccounts=["shop/*"])]}]),
            "spec.rules[0]",
            "no wildcards",
        ),
        (
            istio_ap("x", rules=[{"from": [src(namespaces=["Shop"])]}]),
            "spec.rules[0]",
            "not a namespace name",
        ),
        (
            istio_ap("x", rules=[{"from": [src(serviceAccounts=["a/b"], notNamespaces=["c"])]}]),
            "spec.rules[0]",
            "serviceAccounts together with principals or namespaces",
        ),
        (istio_ap("x", spec={"rules": {}}), "spec.rules", "expected a list"),
        (istio_ap("x", spec={"selectors": {}}), "spec.selectors", "unknown field"),
        (
            {
                "apiVersion": "security.istio.io/v1",
                "kind": "PeerAuthentication",
                "metadata": {"name": "a", "namespace": "b"},
            },
            "kind",
            "not an AuthorizationPolicy",
        ),
        (
            {
                "apiVersion": "security.istio.io/v1",
                "kind": "AuthorizationPolicy",
                "metadata": {"name": "a"},
            },
            "metadata",
            "namespace",
        ),
    ],
)
def test_refused_policies(policy: Doc, path: str, words: str) -> None:
    """A policy that cannot be translated (or that Istio itself would reject) is refused whole, saying why."""
    translation = translate(policy)
    assert translation.documents == ()
    [finding] = translation.findings
    assert finding.exactness is Exactness.REFUSED
    assert (finding.path, finding.where) == (path, "policies.yaml#0")
    assert words in finding.message, finding.message
    assert not translation.exact


def test_http_fields_drop_an_allow_rule() -> None:
    """An ALLOW rule with HTTP methods never matches on TCP: left out, the policy kept, the field reported."""
    translation = translate(
        istio_ap("p", rules=[{"to": [op(methods=["GET"])]}, {"to": [op(ports=["80"])]}])
    )
    assert only_spec(translation)["rules"] == [
        {"sources": [{"type": "Any"}], "networkAttributes": {"ports": [80]}}
    ]
    [finding] = translation.findings
    assert (finding.exactness, finding.path) == (
        Exactness.APPROXIMATE,
        "spec.rules[0].to[0].operation.methods",
    )
    assert "never matches" in finding.message


def test_http_fields_are_ignored_in_a_deny_rule() -> None:
    """A DENY rule's HTTP-only fields are skipped on TCP, its ports kept, and the approximation reported."""
    translation = translate(
        istio_ap(
            "d",
            action="DENY",
            rules=[
                {
                    "to": [op(paths=["/admin"], ports=["80"])],
                    "when": [when("request.auth.claims[group]", ["x"])],
                }
            ],
        )
    )
    assert only_spec(translation)["rules"] == [
        {"sources": [{"type": "Any"}], "networkAttributes": {"ports": [80]}}
    ]
    assert [f.path for f in translation.findings] == [
        "spec.rules[0].to[0].operation.paths",
        "spec.rules[0].when[0]",
    ]


def test_unsayable_l4_conditions_fail_closed() -> None:
    """``destination.ip`` leaves an ALLOW rule out and widens a DENY rule, both refused in the report."""
    allow = translate(istio_ap("p", rules=[{"when": [when("destination.ip", ["10.1.0.0/16"])]}]))
    assert only_spec(allow)["rules"] == []
    deny = translate(
        istio_ap("d", action="DENY", rules=[{"when": [when("connection.sni", ["a.example"])]}])
    )
    assert only_spec(deny)["rules"] == [{"sources": [{"type": "Any"}]}]
    assert [f.exactness for f in (*allow.findings, *deny.findings)] == [Exactness.REFUSED] * 2


def test_principals_with_aliases_and_wildcards() -> None:
    """Principals get spiffe://, cluster.local and aliases expand (five-part values only), ``*`` forms are globs."""
    [rule] = rules_of(
        {
            "from": [
                src(
                    principals=[
                        "cluster.local/ns/a/sa/b",
                        "far.org/ns/a/sa/b",
                        "example.org/ns/a/sa/*",
                        "example.org/ns/*",
                        "*/sa/b",
                        "*",
                    ]
                )
            ]
        }
    )
    assert rule["sources"] == [
        {"type": "SPIFFE", "spiffe": "spiffe://example.org/ns/a/sa/b"},
        {"type": "SPIFFE", "spiffe": "spiffe://old.org/ns/a/sa/b"},
        {"type": "SPIFFE", "spiffe": "spiffe://far.org/ns/a/sa/b"},
        pattern("spiffe://example.org/ns/a/sa/*"),
        pattern("spiffe://old.org/ns/a/sa/*"),
        pattern("spiffe://example.org/ns/*"),  # four parts: Istio leaves it alone
        pattern("spiffe://*/sa/b"),
        pattern("spiffe://*"),
    ]


def test_principal_that_never_matches_drops_its_source() -> None:
    """A principal written with spiffe:// never matches in Istio, so its source, and here its rule, goes."""
    assert rules_of({"from": [src(principals=["spiffe://example.org/ns/a/sa/b"])]}) == []
    assert rules_of({"from": [src(principals=["*/sa/a b", "a*b", "*@x"])]}) == []


def test_namespaces_and_service_accounts() -> None:
    """Namespaces and service accounts match any trust domain and extra path segments, as Istio's regexes do."""
    [rule] = rules_of({"from": [src(namespaces=["prod-*"])]})
    assert rule["sources"] == [pattern("spiffe://*/ns/prod-*/*"), pattern("spiffe://ns/prod-*/*")]
    [rule] = rules_of({"from": [src(serviceAccounts=["web"])]})
    assert rule["sources"] == [
        pattern("spiffe://*/ns/shop/sa/web"),
        pattern("spiffe://*/ns/shop/sa/web/*"),
        pattern("spiffe://*/ns/shop/*/sa/web"),
        pattern("spiffe://*/ns/shop/*/sa/web/*"),
    ]


def test_source_fields_are_and_ed() -> None:
    """Two fields of one source become AllOf sources, one per pair of values."""
    [rule] = rules_of({"from": [src(principals=["*/sa/web"], namespaces=["shop", "ops"])]})
    assert rule["sources"] == [
        {"type": "AllOf", "allOf": [pattern("spiffe://*/sa/web"), pattern("spiffe://*/ns/shop/*")]},
        {"type": "AllOf", "allOf": [pattern("spiffe://*/sa/web"), pattern("spiffe://ns/shop/*")]},
        {"type": "AllOf", "allOf": [pattern("spiffe://*/sa/web"), pattern("spiffe://*/ns/ops/*")]},
        {"type": "AllOf", "allOf": [pattern("spiffe://*/sa/web"), pattern("spiffe://ns/ops/*")]},
    ]


def test_exact_principals_fold_the_other_fields() -> None:
    """Beside an exact principal, another field either holds for it (and goes) or never can (and the pair goes)."""
    [rule] = rules_of(
        {
            "from": [
                src(
                    principals=["far.org/ns/a/sa/b", "*"],
                    namespaces=["a"],
                    trustDomains=["far.org"],
                )
            ]
        }
    )
    assert rule["sources"] == [
        {"type": "SPIFFE", "spiffe": "spiffe://far.org/ns/a/sa/b"},
        {
            "type": "AllOf",
            "allOf": [
                pattern("spiffe://*/ns/a/*"),
                {"type": "Authenticated", "authenticated": {"trustDomains": ["far.org"]}},
            ],
        },
        {
            "type": "AllOf",
            "allOf": [
                pattern("spiffe://ns/a/*"),
                {"type": "Authenticated", "authenticated": {"trustDomains": ["far.org"]}},
            ],
        },
    ]
    assert rules_of({"from": [src(principals=["far.org/ns/a/sa/b"], namespaces=["z"])]}) == []


def test_negations() -> None:
    """``not*`` fields become notSources, exceptSourceCIDRs and exceptPorts."""
    [rule] = rules_of(
        {
            "from": [
                src(
                    notPrincipals=["*"],
                    notTrustDomains=["cluster.local"],
                    notIpBlocks=["10.0.0.0/8"],
                )
            ],
            "to": [op(notPorts=["22"])],
        }
    )
    assert rule == {
        "sources": [{"type": "Any"}],
        "notSources": [
            pattern("spiffe://*"),
            {
                "type": "Authenticated",
                "authenticated": {"trustDomains": ["example.org", "old.org"]},
            },
        ],
        "networkAttributes": {"exceptPorts": [22], "exceptSourceCIDRs": ["10.0.0.0/8"]},
    }


def test_conditions_intersect_with_sources_and_operations() -> None:
    """``when`` on addresses and ports narrows each (source, operation) pair; an empty intersection drops it."""
    rules = rules_of(
        {
            "from": [src(ipBlocks=["10.0.0.0/8", "192.168.0.0/16"])],
            "to": [op(ports=["80", "443"]), op(ports=["22"])],
            "when": [
                when("source.ip", ["10.1.0.0/16", "172.16.0.1"]),
                when("destination.port", ["443", "22"], ["22"]),
            ],
        }
    )
    assert rules == [
        {
            "sources": [{"type": "Any"}],
            "networkAttributes": {"ports": [443], "sourceCIDRs": ["10.1.0.0/16"]},
        }
    ]


def test_pairs_of_sources_and_operations() -> None:
    """Each (source, operation) pair of a rule is one Sigil rule."""
    rules = rules_of(
        {
            "from": [src(namespaces=["a"]), src(ipBlocks=["10.0.0.1"])],
            "to": [op(ports=["80"]), op(ports=["81"])],
        }
    )
    assert len(rules) == 4
    assert [r["networkAttributes"]["ports"] for r in rules] == [[80], [81], [80], [81]]


def test_many_rules_split_into_parts() -> None:
    """More rules than one Sigil policy holds become ``-part-N`` siblings with the same action and targets."""
    rules = [{"to": [op(ports=[str(1000 + i)])]} for i in range(200)]
    translation = translate(istio_ap("big", action="DENY", match={"app": "db"}, rules=rules))
    names = [t.document["metadata"]["name"] for t in translation.documents]
    assert names == ["big", "big-part-2"]
    assert [len(t.document["spec"]["rules"]) for t in translation.documents] == [128, 72]
    assert {t.document["spec"]["action"] for t in translation.documents} == {"DENY"}
    assert translation.exact


def test_remote_addresses_are_approximate() -> None:
    """``remoteIpBlocks`` and ``remote.ip`` are compared with the peer's own address, and reported so."""
    translation = translate(
        istio_ap(
            "p",
            rules=[
                {
                    "from": [src(remoteIpBlocks=["10.0.0.0/8"])],
                    "when": [when("remote.ip", not_values=["10.9.0.0/16"])],
                }
            ],
        )
    )
    assert only_spec(translation)["rules"] == [
        {
            "sources": [{"type": "Any"}],
            "networkAttributes": {
                "sourceCIDRs": ["10.0.0.0/8"],
                "exceptSourceCIDRs": ["10.9.0.0/16"],
            },
        }
    ]
    assert [(f.exactness, f.path) for f in translation.findings] == [
        (Exactness.APPROXIMATE, "spec.rules[0].from[0].source.remoteIpBlocks"),
        (Exactness.APPROXIMATE, "spec.rules[0].when[0]"),
    ]
    assert not translation.exact


_JUNK = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 70000)
    | st.sampled_from(["", "*", "80", "10.0.0.0/8", "a/b", "GET"]),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "rules",
                    "from",
                    "to",
                    "when",
                    "source",
                    "operation",
                    "key",
                    "values",
                    "principals",
                    "namespaces",
                    "ports",
                    "notPorts",
                    "ipBlocks",
                    "selector",
                    "matchLabels",
                    "action",
                ]
            ),
            inner,
            max_size=3,
        )
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(_JUNK)
def test_any_spec_is_translated_or_refused(spec: object) -> None:
    """Whatever a spec holds, the dialect answers with documents or a refusal naming a field, never a crash."""
    translation = translate(istio_ap("p", spec=spec))  # type: ignore[arg-type]  # junk on purpose
    refused = [f for f in translation.findings if f.exactness is Exactness.REFUSED]
    assert (translation.documents and not refused) or (
        not translation.documents and len(refused) == 1
    )
    for finding in refused:
        assert finding.path.startswith("spec"), finding


def test_long_lists_split_over_rules() -> None:
    """More ports or address blocks than one Sigil rule holds are spread over several rules, OR-ed exactly."""
    ports = [str(2000 + 2 * i) for i in range(100)]
    blocks = [f"10.{i}.0.0/16" for i in range(0, 80, 2)]
    rules = rules_of({"from": [src(ipBlocks=blocks)], "to": [op(ports=ports)]})
    assert len(rules) == 4
    assert sorted(p for r in rules[::2] for p in r["networkAttributes"]["ports"]) == [
        int(p) for p in ports
    ]
    assert sorted({b for r in rules for b in r["networkAttributes"]["sourceCIDRs"]}) == sorted(
        blocks
    )


@pytest.mark.parametrize(
    ("source", "words"),
    [
        (src(notPrincipals=[f"far.org/ns/a/sa/s{i}" for i in range(40)]), "excluded peers: 40"),
        (
            src(
                principals=["*/sa/a"],
                namespaces=["a"],
                trustDomains=["a.org"],
            ),
            None,
        ),
    ],
)
def test_what_one_rule_cannot_hold_is_refused(source: Doc, words: str | None) -> None:
    """What cannot be split over rules (exclusions, AllOf members) beyond Sigil's limits refuses the policy."""
    conditions = [when("source.principal", ["*/x"]), when("source.namespace", ["b"])]
    translation = translate(istio_ap("p", rules=[{"from": [source], "when": conditions}]))
    if words is None:  # five AND-ed identity fields: more than AllOf's four members
        assert [f.exactness for f in translation.findings] == [Exactness.REFUSED]
        assert "AllOf holds at most 4" in translation.findings[0].message
    else:
        assert words in translation.findings[0].message
    assert translation.documents == ()
