"""Properties of the effective view over random policy sets: it agrees with single decisions for every peer, port
and address.

The policy sets (the whole 7.1 language: Authenticated, SameNamespace and Namespaces sources, ``ports: []``, port
ranges, source CIDRs with exceptions; and the mesh extensions: notSources, AllOf and SPIFFEPattern sources,
excepted ports and ranges, Mesh scope, target ref ports), and the plain reading of part 7 and 7.1 that checks them, are those of
``test_properties``. The peers, ports and addresses here are drawn beyond anything the policies name (random
paths in three trust domains and in namespaces no rule names, no SVID at all; any port; any IPv4 or IPv6
address, inside and around the blocks, IPv4-mapped, unknown or malformed), under every ``--default``, so the
properties test that the view's rows and columns cover every connection, not only the representatives it picked.
"""

from __future__ import annotations

from collections.abc import Sequence

from enforcer.test_properties import (
    ADDRESSES,
    LOCAL,
    NAMESPACE_LABELS,
    NAMESPACES,
    PEER_IDS,
    PORTS,
    REQUEST_PORTS,
    TEMPLATES,
    _label_sets,
    _policy_sets,
    naive,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from sigil.ca.spiffe_id import SpiffeId
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
    SpiffeSource,
    Target,
)
from sigil.enforcer.policy.defaults import DefaultPolicy
from sigil.enforcer.policy.effective import EffectivePolicy, effective
from sigil.enforcer.policy.peer_classes import class_of
from sigil.enforcer.policy.peer_ids import WorkloadIdPattern

_segments = st.sampled_from(
    ("ns", "sa", "a", "b", "c", "s1", "s2", "x", "extra", "other", "pod-x", "pod-s1", "k8s")
)
# Paths grow from the places policies name (accounts' namespaces, prefixes) so that peers just below, beside
# and far below them are all drawn often; /ns/c and /ns/zz are namespaces whose labels no one knows.
# /a, /ns and /k8s/a are where the other workload ID templates put namespaces.
_stems = st.sampled_from(
    (
        "",
        "/ns",
        "/ns/a",
        "/ns/a/sa",
        "/ns/b/sa",
        "/ns/c/sa",
        "/ns/zz/sa",
        "/ns/a/sa/s1",
        "/x",
        "/a",
        "/zz",
        "/k8s/a",
        "/k8s/zz",
        "/k8s/ns",
    )
)
_paths = st.builds(
    lambda stem, rest: stem + "".join(f"/{part}" for part in rest),
    _stems,
    st.lists(_segments, max_size=3),
).filter(bool)
_domains = st.sampled_from(("example.org", "other.org", "third.org"))
_any_peers = (
    st.none()
    | st.sampled_from(PEER_IDS).map(SpiffeId.parse)
    | st.builds(lambda td, path: SpiffeId.parse(f"spiffe://{td}{path}"), _domains, _paths)
)
_any_ports = (
    st.sampled_from(PORTS + REQUEST_PORTS)
    | st.sampled_from((1, 78, 82, 399, 999, 1001, 8079, 8081, 65535))
    | st.integers(1, 65535)
)
# The blocks test_properties' networks name (10/8 except 10.1/16, 192.168/16 and /24, fd00::/8), their edges,
# and anywhere at all.
_any_addresses = (
    st.sampled_from(ADDRESSES)
    | st.sampled_from(
        (
            "9.255.255.255",
            "10.0.0.0",
            "10.0.255.255",
            "10.1.0.0",
            "10.1.255.255",
            "10.2.0.0",
            "10.255.255.255",
            "11.0.0.0",
            "192.168.0.255",
            "192.168.1.0",
            "192.168.255.255",
            "192.169.0.0",
            "fcff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "fd00::",
            "fe00::",
            "::ffff:192.168.0.9",
            "::",
            "0.0.0.0",  # noqa: S104 - a peer address drawn, nothing binds it
        )
    )
    | st.sampled_from(("10.0.0.0/8", "10.1.0.0/16", "192.168.0.0/16", "fd00::/8")).flatmap(
        lambda block: st.ip_addresses(network=block).map(str)
    )
    | st.ip_addresses().map(str)
)
_defaults = st.sampled_from(DefaultPolicy)
_connections = st.lists(st.tuples(_any_peers, _any_ports, _any_addresses), min_size=1, max_size=8)
Connection = tuple[SpiffeId | None, int, str | None]
_effects = st.sampled_from((Effect.ALLOW, Effect.DENY))
# test_properties' sets never name a prefix that ends just above ServiceAccount names (.../ns/a/sa/*), where
# the one-level-deeper ID reads as an account: this policy adds that case, beside the account source.
_accounts_below_prefix = st.builds(
    lambda tier, first, second: ClusterAuthorizationPolicy(
        "deep",
        tier,
        1,
        LabelSelector(),
        rules=(
            Rule(
                first, (SpiffeSource(SpiffeId.parse("spiffe://example.org/ns/a/sa"), prefix=True),)
            ),
            Rule(second, (ServiceAccountSource("a", "*"),), frozenset({80})),
        ),
    ),
    st.sampled_from(ClusterTier),
    _effects,
    _effects,
)
_sets = st.tuples(_policy_sets, st.lists(_accounts_below_prefix, max_size=1)).map(
    lambda drawn: [*drawn[0], *drawn[1]]
)


def _view(
    policies: Sequence[Policy],
    namespace: str,
    labels: dict[str, str],
    default: DefaultPolicy,
    template: str = TEMPLATES[0],
) -> EffectivePolicy:
    return effective(
        policies,
        Target(namespace, labels),
        trust_domain=LOCAL,
        namespace_labels=NAMESPACE_LABELS[namespace],
        namespaces=NAMESPACE_LABELS,
        default=default,
        workload_ids=WorkloadIdPattern(template),
    )


def _index(
    policies: Sequence[Policy], default: DefaultPolicy, template: str = TEMPLATES[0]
) -> PolicyIndex:
    return PolicyIndex(
        policies,
        trust_domain=LOCAL,
        default=default,
        namespaces=NAMESPACE_LABELS,
        workload_ids=WorkloadIdPattern(template),
    )


@settings(max_examples=300, deadline=None)  # speed is a bench matter, not a test one
@given(
    _sets,
    st.sampled_from(NAMESPACES),
    _label_sets,
    _defaults,
    _connections,
    st.sampled_from(TEMPLATES),
)
def test_the_table_agrees_with_check_for_every_peer_and_port(
    policies: list[Policy],
    namespace: str,
    labels: dict[str, str],
    default: DefaultPolicy,
    connections: list[Connection],
    template: str,
) -> None:
    """Any peer's class, at any address's group, on any port's column, holds the decision ``check`` gives and
    part 7 read aloud gives, under any workload ID template."""
    view = _view(policies, namespace, labels, default, template)
    index = _index(policies, default, template)
    classes = [row.peer for row in view.rows]
    for peer, port, address in connections:
        cell = view.cell(class_of(classes, index, peer), port, address)
        decision = index.decide(peer, Target(namespace, labels), port, address=address)
        got = (
            cell.decision.allowed,
            cell.decision.tier.value,
            cell.decision.policy,
            cell.decision.rule,
        )
        assert got == (decision.allowed, decision.tier.value, decision.policy, decision.rule)
        reference = naive(
            policies,
            peer,
            namespace,
            labels,
            port,
            default_allow=True,
            default=default,
            address=address,
            template=template,
        )
        assert got == reference
        assert cell.decision.shadow == decision.shadow
        assert cell.decision.verdict.audit == decision.verdict.audit


@settings(max_examples=300, deadline=None)  # speed is a bench matter, not a test one
@given(
    _sets,
    st.sampled_from(NAMESPACES),
    _label_sets,
    _defaults,
    _connections,
    st.sampled_from(TEMPLATES),
)
def test_a_shadowed_rule_never_decides(
    policies: list[Policy],
    namespace: str,
    labels: dict[str, str],
    default: DefaultPolicy,
    connections: list[Connection],
    template: str,
) -> None:
    """No connection is ever decided by a rule the view flags as shadowed, enforced or in the dry-run pass."""
    view = _view(policies, namespace, labels, default, template)
    shadowed = {(e.match.policy, e.match.rule) for e in view.rules if e.shadowed}
    index = _index(policies, default, template)
    shadowed_policies = {
        (e.policy.kind, e.policy.ref) for e in view.policies if e.shadowed and not e.policy.dry_run
    }
    for peer, port, address in connections:
        decision = index.decide(
            peer, Target(namespace, labels), port, address=address, explain=True
        )
        assert (decision.policy, decision.rule) not in shadowed
        admin = [m for m in decision.matches if m.tier.value == "admin"]
        if admin and admin[0].effect is Effect.PASS:  # the Pass that handed this one on
            assert (admin[0].policy, admin[0].rule) not in shadowed
        if decision.tier.value == "namespace" and decision.policy is None:
            # Denied by deny-if-not-allowed: each enforced ALLOW policy selecting the pod took part.
            allows = {
                ("AuthorizationPolicy", p.ref)
                for p in policies
                if isinstance(p, AuthorizationPolicy)
                and p.action is Effect.ALLOW
                and not p.dry_run
                and (p.namespace == namespace or p.mesh)
                and (p.target_ports is None or port in p.target_ports)
                and p.selector.matches(labels)
            }
            assert not allows & shadowed_policies
        if decision.shadow is not None and decision.shadow.policy is not None:
            decider = next(
                e
                for e in view.rules
                if (e.match.policy, e.match.rule) == (decision.shadow.policy, decision.shadow.rule)
            )
            assert not (decider.match.dry_run and decider.shadowed)


@settings(deadline=None)
@given(_sets, st.sampled_from(NAMESPACES), _label_sets, _defaults)
def test_every_rule_not_shadowed_decides_some_cell(
    policies: list[Policy], namespace: str, labels: dict[str, str], default: DefaultPolicy
) -> None:
    """The flag is not a guess in the other direction either: a rule left unflagged decides a cell of the table."""
    view = _view(policies, namespace, labels, default)
    deciders = set()
    for row in view.rows:
        for cell in row.cells:
            for verdict in (cell.decision.verdict, cell.decision.shadow):
                if verdict is not None:
                    deciders.add((verdict.policy, verdict.rule))
            deciders |= {
                (m.policy, m.rule)
                for m in (*cell.decision.matches, *cell.decision.dry_run)
                if m.effect.value == "pass"
            }
    for entry in view.rules:
        if not entry.shadowed:
            assert (entry.match.policy, entry.match.rule) in deciders
