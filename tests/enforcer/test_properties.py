"""Properties of the evaluator over random policy sets, checked against a plain reading of part 7 and 7.1."""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Mapping, Sequence
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from sigil.ca.spiffe_id import SpiffeId, TrustDomain
from sigil.enforcer.policy import (
    AuthorizationPolicy,
    ClusterAuthorizationPolicy,
    ClusterTier,
    Effect,
    LabelSelector,
    Policy,
    PolicyIndex,
    Rule,
    ServiceAccountSource,
    Source,
    SpiffeSource,
    Target,
)
from sigil.enforcer.policy.defaults import DefaultPolicy
from sigil.enforcer.policy.identity_sources import (
    AllOfSource,
    AuthenticatedSource,
    NamespacesSource,
    SameNamespaceSource,
    SpiffePatternSource,
)
from sigil.enforcer.policy.network import PortRange, SourceNetwork
from sigil.enforcer.policy.selector import Operator, Requirement

LOCAL = TrustDomain("example.org")
NAMESPACES = ("a", "b")
NAMESPACE_LABELS = {"a": {"env": "prod"}, "b": {"env": "dev"}}
PORTS = (80, 443, 8080)
# Request ports: the named ones, and ports inside and outside the ranges rules may name.
REQUEST_PORTS = (80, 443, 8080, 8081, 1000, 79)
RANGES = (PortRange(79, 81), PortRange(400, 8080), PortRange(1000, 1000))
ADDRESSES = (None, "10.0.0.5", "10.1.0.5", "192.168.0.1", "::ffff:10.0.0.5", "fd00::1", "bogus")
NETWORKS = (
    SourceNetwork((ipaddress.ip_network("10.0.0.0/8"),)),
    SourceNetwork((ipaddress.ip_network("10.0.0.0/8"),), (ipaddress.ip_network("10.1.0.0/16"),)),
    SourceNetwork((), (ipaddress.ip_network("192.168.0.0/16"),)),
    SourceNetwork((ipaddress.ip_network("fd00::/8"), ipaddress.ip_network("192.168.0.0/24"))),
)
NAMES = ("alpha", "beta", "gamma", "delta", "eps")
PEER_IDS = (
    "spiffe://example.org/ns/a/sa/s1",
    "spiffe://example.org/ns/a/sa/s2",
    "spiffe://example.org/ns/b/sa/s1",
    "spiffe://example.org/ns/c/sa/s1",
    "spiffe://example.org/ns/a/sa/s1/extra",
    "spiffe://example.org/ns/a",
    "spiffe://example.org/x",
    "spiffe://other.org/ns/a/sa/s1",
    "spiffe://other.org/x/y",
)
PATTERNS = (
    "spiffe://*",
    "spiffe://*/ns/a/*",
    "spiffe://example.org/ns/*/sa/s1",
    "spiffe://*.org/x*",
    "spiffe://example.org/ns/a/sa/s1*",
)

Verdict = tuple[bool, str, str | None, int | None]

# --------------------------------------------------------------------------- a plain reference evaluator


def _selected(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    for key, value in selector.match_labels:
        if labels.get(key) != value:
            return False
    for req in selector.match_expressions:
        present = req.key in labels
        if req.operator is Operator.IN and not (present and labels[req.key] in req.values):
            return False
        if req.operator is Operator.NOT_IN and present and labels[req.key] in req.values:
            return False
        if req.operator is Operator.EXISTS and not present:
            return False
        if req.operator is Operator.DOES_NOT_EXIST and present:
            return False
    return True


#: Workload ID templates the effective view's properties also run under, each with its plain reader below.
TEMPLATES = (
    "ns/{namespace}/sa/{service_account}",
    "{namespace}/{service_account}",
    "k8s/{namespace}/pod-{pod_name}",
    "{pod_name}/{namespace}",
)


def _local_place(peer: SpiffeId, template: str = TEMPLATES[0]) -> tuple[str, str | None] | None:
    """A local peer's (namespace, ServiceAccount) under ``template``, read by hand for each template."""
    parts = peer.path.split("/")
    if peer.trust_domain != LOCAL:
        return None
    if template == TEMPLATES[0] and len(parts) == 5 and parts[1] == "ns" and parts[3] == "sa":
        return parts[2], parts[4]
    if template == TEMPLATES[1] and len(parts) == 3:
        return parts[1], parts[2]
    pod = len(parts) == 4 and parts[3].startswith("pod-") and len(parts[3]) > 4
    if template == TEMPLATES[2] and pod and parts[1] == "k8s":
        return parts[2], None
    if template == TEMPLATES[3] and len(parts) == 3:
        return parts[2], None
    return None


def _namespace_selected(selector: LabelSelector, namespace: str) -> bool:
    labels = {**NAMESPACE_LABELS.get(namespace, {}), "kubernetes.io/metadata.name": namespace}
    if namespace not in NAMESPACE_LABELS:
        keys = {k for k, _ in selector.match_labels} | {r.key for r in selector.match_expressions}
        if keys - {"kubernetes.io/metadata.name"}:
            return False  # labels the enforcer does not know never match
    return _selected(selector, labels)


def _glob(pattern: str, text: str) -> bool:
    """``*`` matches any run of characters, every other character itself (by hand, not by regex)."""
    if not pattern:
        return not text
    if pattern[0] == "*":
        return any(_glob(pattern[1:], text[cut:]) for cut in range(len(text) + 1))
    return bool(text) and text[0] == pattern[0] and _glob(pattern[1:], text[1:])


def _source_matches(
    source: Source, peer: SpiffeId | None, namespace: str, template: str = TEMPLATES[0]
) -> bool:
    if peer is None:
        return False
    if isinstance(source, AllOfSource):
        return all(_source_matches(m, peer, namespace, template) for m in source.members)
    if isinstance(source, SpiffePatternSource):
        return _glob(source.pattern, str(peer))
    place = _local_place(peer, template)
    if isinstance(source, ServiceAccountSource):
        return place is not None and place[0] == source.namespace and source.name in ("*", place[1])
    if isinstance(source, AuthenticatedSource):
        domains = source.trust_domains
        return domains is None or peer.trust_domain.name in domains
    if isinstance(source, SameNamespaceSource):
        return place is not None and place[0] == namespace
    if isinstance(source, NamespacesSource):
        return place is not None and _namespace_selected(source.selector, place[0])
    if source.prefix:
        return peer.trust_domain == source.spiffe_id.trust_domain and peer.path.startswith(
            source.spiffe_id.path + "/"
        )
    return peer == source.spiffe_id


def _address(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if text is None:
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _rule_matches(
    rule: Rule,
    peer: SpiffeId | None,
    port: int,
    address: str | None,
    namespace: str,
    template: str = TEMPLATES[0],
) -> bool:
    named = rule.ports is not None or rule.port_ranges
    in_ranges = any(span.start <= port <= span.end for span in rule.port_ranges)
    if named and port not in (rule.ports or ()) and not in_ranges:
        return False
    if port in rule.except_ports or any(port in span for span in rule.except_ranges):
        return False
    if any(_source_matches(s, peer, namespace, template) for s in rule.not_sources):
        return False
    if rule.network is not None:
        ip = _address(address)
        if ip is None:
            return False
        if rule.network.include and not any(ip in block for block in rule.network.include):
            return False
        if any(ip in block for block in rule.network.exclude):
            return False
    return rule.sources is None or any(
        _source_matches(s, peer, namespace, template) for s in rule.sources
    )


def naive(
    policies: Sequence[Policy],
    peer: SpiffeId | None,
    namespace: str,
    labels: Mapping[str, str],
    port: int,
    *,
    default_allow: bool,
    address: str | None = None,
    default: DefaultPolicy | None = None,
    template: str = TEMPLATES[0],
) -> Verdict:
    """Part 7 read aloud: scan every policy, tier by tier (``default``, when given, overrides ``default_allow``)."""
    ns_labels = {**NAMESPACE_LABELS.get(namespace, {}), "kubernetes.io/metadata.name": namespace}
    live = [p for p in policies if not p.dry_run]
    cluster = sorted(
        (
            p
            for p in live
            if isinstance(p, ClusterAuthorizationPolicy)
            and _selected(p.namespace_selector, ns_labels)
            and _selected(p.pod_selector, labels)
        ),
        key=lambda p: (p.priority, p.name),
    )
    passed = False
    for admin in (p for p in cluster if p.tier is ClusterTier.ADMIN):
        for number, rule in enumerate(admin.rules):
            if _rule_matches(rule, peer, port, address, namespace, template):
                if rule.effect is Effect.PASS:
                    passed = True
                    break
                return (rule.effect is Effect.ALLOW, "admin", admin.name, number)
        if passed:
            break
    owned = sorted(
        (
            p
            for p in live
            if isinstance(p, AuthorizationPolicy)
            and (p.namespace == namespace or p.mesh)
            and (p.target_ports is None or port in p.target_ports)
            and _selected(p.selector, labels)
        ),
        key=lambda p: p.ref,
    )
    for policy in (p for p in owned if p.action is Effect.DENY):
        for number, rule in enumerate(policy.rules):
            if _rule_matches(rule, peer, port, address, namespace, template):
                return (False, "namespace", policy.ref, number)
    allows = [p for p in owned if p.action is Effect.ALLOW]
    for policy in allows:
        for number, rule in enumerate(policy.rules):
            if _rule_matches(rule, peer, port, address, namespace, template):
                return (True, "namespace", policy.ref, number)
    if allows:
        return (False, "namespace", None, None)
    for baseline in (p for p in cluster if p.tier is ClusterTier.BASELINE):
        for number, rule in enumerate(baseline.rules):
            if _rule_matches(rule, peer, port, address, namespace, template):
                return (rule.effect is Effect.ALLOW, "baseline", baseline.name, number)
    if default is DefaultPolicy.DENY:
        default_allow = False
    elif default is DefaultPolicy.AUTHENTICATED:
        default_allow = peer is not None
    elif default is DefaultPolicy.LOCAL_AUTHENTICATED:
        default_allow = peer is not None and peer.trust_domain == LOCAL
    elif default is not None:  # allow, and audit, which allows
        default_allow = True
    return (default_allow, "default", None, None)


# --------------------------------------------------------------------------- strategies

_label_sets = st.dictionaries(
    st.sampled_from(("app", "tier")), st.sampled_from(("x", "y")), max_size=2
)
_requirements = st.builds(
    Requirement,
    key=st.sampled_from(("app", "tier", "env", "kubernetes.io/metadata.name")),
    operator=st.sampled_from(Operator),
    values=st.frozensets(st.sampled_from(("x", "y", "prod", "a")), min_size=1, max_size=2),
)
_selectors = st.builds(
    LabelSelector,
    match_labels=_label_sets.map(lambda d: tuple(sorted(d.items()))),
    match_expressions=st.lists(_requirements, max_size=1).map(tuple),
)
_namespace_selectors = st.one_of(
    st.just(LabelSelector()),
    st.sampled_from(("prod", "dev")).map(lambda env: LabelSelector((("env", env),))),
    st.sampled_from(NAMESPACES).map(
        lambda ns: LabelSelector((("kubernetes.io/metadata.name", ns),))
    ),
)
_simple_sources: st.SearchStrategy[Source] = st.one_of(
    st.builds(
        ServiceAccountSource,
        namespace=st.sampled_from(NAMESPACES),
        name=st.sampled_from(("s1", "s2", "*")),
    ),
    st.builds(SpiffeSource, spiffe_id=st.sampled_from(PEER_IDS).map(SpiffeId.parse)),
    st.builds(
        SpiffeSource,
        spiffe_id=st.sampled_from(
            (
                "spiffe://example.org",
                "spiffe://example.org/ns",
                "spiffe://example.org/ns/a",
                "spiffe://other.org",
            )
        ).map(SpiffeId.parse),
        prefix=st.just(True),
    ),
    st.builds(
        AuthenticatedSource,
        trust_domains=st.none()
        | st.frozensets(st.sampled_from(("example.org", "other.org")), min_size=1),
    ),
    st.just(SameNamespaceSource()),
    st.builds(
        NamespacesSource,
        selector=_namespace_selectors
        | st.just(LabelSelector((), (Requirement("env", Operator.NOT_IN, frozenset({"dev"})),))),
    ),
)
_simple_sources = _simple_sources | st.sampled_from(PATTERNS).map(SpiffePatternSource)
_sources = _simple_sources | st.lists(_simple_sources, min_size=1, max_size=2).map(
    lambda members: AllOfSource(tuple(members))
)
_ports = st.none() | st.frozensets(st.sampled_from(PORTS), min_size=1, max_size=2)
_source_lists = st.none() | st.lists(_sources, max_size=3).map(tuple)


@st.composite
def _rule(draw: st.DrawFn, effects: Sequence[Effect]) -> Rule:
    ports = draw(_ports)
    ranges = tuple(draw(st.lists(st.sampled_from(RANGES), max_size=2, unique=True)))
    return Rule(
        draw(st.sampled_from(effects)),
        draw(_source_lists),
        # As the model builds it: ports None only when no range is named either.
        frozenset() if ports is None and ranges else ports,
        ranges,
        draw(st.none() | st.sampled_from(NETWORKS)),
        tuple(draw(st.lists(_sources, max_size=2))),
        draw(st.frozensets(st.sampled_from(REQUEST_PORTS), max_size=1)),
        tuple(draw(st.lists(st.sampled_from(RANGES), max_size=1))),
    )


def _rules(effects: Sequence[Effect]) -> st.SearchStrategy[tuple[Rule, ...]]:
    return st.lists(_rule(effects), max_size=3).map(tuple)


@st.composite
def _namespaced(draw: st.DrawFn) -> AuthorizationPolicy:
    action = draw(st.sampled_from((Effect.ALLOW, Effect.DENY)))
    return AuthorizationPolicy(
        namespace=draw(st.sampled_from(NAMESPACES)),
        name=draw(st.sampled_from(NAMES)),
        selector=draw(_selectors),
        action=action,
        rules=draw(_rules((action,))),
        dry_run=draw(st.booleans()),
        mesh=draw(st.booleans()),
        target_ports=draw(st.none() | st.frozensets(st.sampled_from(PORTS), min_size=1)),
    )


@st.composite
def _cluster(draw: st.DrawFn) -> ClusterAuthorizationPolicy:
    tier = draw(st.sampled_from(ClusterTier))
    effects = (Effect.ALLOW, Effect.DENY) + ((Effect.PASS,) if tier is ClusterTier.ADMIN else ())
    return ClusterAuthorizationPolicy(
        name=draw(st.sampled_from(NAMES)),
        tier=tier,
        priority=draw(st.integers(0, 2)),  # a narrow range so that ties by name happen
        namespace_selector=draw(_namespace_selectors),
        pod_selector=draw(_selectors),
        rules=draw(_rules(effects)),
        dry_run=draw(st.booleans()),
    )


def _identity(policy: Policy) -> tuple[str, str, str]:
    return (policy.kind, getattr(policy, "namespace", ""), policy.name)


_policy_sets = st.lists(_namespaced() | _cluster(), max_size=8, unique_by=_identity)
_peers = st.none() | st.sampled_from(PEER_IDS).map(SpiffeId.parse)
_requests = st.tuples(
    _peers,
    st.sampled_from(NAMESPACES),
    _label_sets,
    st.sampled_from(REQUEST_PORTS),
    st.sampled_from(ADDRESSES),
)

Request = tuple[SpiffeId | None, str, dict[str, str], int, str | None]


def _index(policies: Sequence[Policy], *, default_allow: bool = True) -> PolicyIndex:
    return PolicyIndex(
        policies, trust_domain=LOCAL, default_allow=default_allow, namespaces=NAMESPACE_LABELS
    )


def _verdict(index: PolicyIndex, request: Request, *, explain: bool = False) -> Verdict:
    peer, namespace, labels, port, address = request
    decision = index.decide(peer, Target(namespace, labels), port, address=address, explain=explain)
    return (decision.allowed, decision.tier.value, decision.policy, decision.rule)


# --------------------------------------------------------------------------- properties


@settings(max_examples=250)
@given(_policy_sets, st.lists(_requests, min_size=1, max_size=6), st.booleans())
def test_index_agrees_with_reference(
    policies: list[Policy], requests: list[Request], default_allow: bool
) -> None:
    """The compiled index decides exactly as a scan of every policy does, tier, policy and rule included."""
    index = _index(policies, default_allow=default_allow)
    for request in requests:
        peer, namespace, labels, port, address = request
        expected = naive(
            policies, peer, namespace, labels, port, default_allow=default_allow, address=address
        )
        assert _verdict(index, request) == expected
        assert _verdict(index, request, explain=True) == expected


@given(_policy_sets, _requests)
def test_dry_run_never_changes_the_decision(policies: list[Policy], request: Request) -> None:
    """Removing every dry-run policy leaves every decision as it was."""
    enforced = [p for p in policies if not p.dry_run]
    assert _verdict(_index(policies), request) == _verdict(_index(enforced), request)


@given(_policy_sets, _requests)
def test_shadow_is_the_decision_with_dry_run_enforced(
    policies: list[Policy], request: Request
) -> None:
    """The shadow verdict equals the decision the same policies give once dry-run is switched off."""
    peer, namespace, labels, port, address = request
    shadow = _index(policies).decide(peer, Target(namespace, labels), port, address=address).shadow
    if shadow is not None:
        enforced = _index([replace(p, dry_run=False) for p in policies])
        assert (shadow.allowed, shadow.tier.value, shadow.policy, shadow.rule) == _verdict(
            enforced, request
        )


@given(_policy_sets, _namespaced(), _requests)
def test_adding_a_deny_never_allows(
    policies: list[Policy], extra: AuthorizationPolicy, request: Request
) -> None:
    """Adding a DENY policy never turns a denied connection into an allowed one."""
    deny = replace(
        extra,
        name="zz-added",
        action=Effect.DENY,
        rules=tuple(replace(r, effect=Effect.DENY) for r in extra.rules),
    )
    before = _verdict(_index(policies), request)
    after = _verdict(_index([*policies, deny]), request)
    assert before[0] or not after[0]


@given(_policy_sets, _requests, st.randoms(use_true_random=False))
def test_order_of_policies_does_not_matter(
    policies: list[Policy], request: Request, shuffler: random.Random
) -> None:
    """The same policies in another order give the same decision."""
    shuffled = list(policies)
    shuffler.shuffle(shuffled)
    assert _verdict(_index(policies), request) == _verdict(_index(shuffled), request)
