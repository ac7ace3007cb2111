"""Do two policy sets decide the same? Every distinct case that can make a difference, decided by both.

``sigil-enforcer diff A B`` compares two sets of any dialect mix (Istio's and Linkerd's translated on reading).
Decisions depend on a connection's target pod (namespace, its labels and the namespace's), peer, port and
address, and each of these falls into finitely many classes that every rule of *both* sets treats alike:

* pods: every namespace either set names (its own policies', its selectors' ``kubernetes.io/metadata.name``),
  plus one neither names; pod and namespace labels: every combination of the keys the selectors ask about, each
  absent, at a value a selector names, or at a value none does (capped at :data:`MAX_LABEL_SETS`; beyond it,
  each selector's own combination and no labels);
* peers, ports, addresses: the effective view's peer classes, port columns and address groups
  (:mod:`.peer_classes`, :mod:`.effective_axes`) of the rules of both sets that select the pod, together.

Each case is decided by each set's own index; a case where one allows and the other denies is a
:class:`Difference`, with the deciding rule on each side. A peer's own namespace is assumed to carry the same
labels as the target's in each case (``Namespaces`` sources read them), unless ``namespaces`` gives them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice, product

from sigil.ca.spiffe_id import SpiffeId, TrustDomain
from sigil.enforcer.policy.decision import NAMESPACE_NAME_LABEL, Decision, Target
from sigil.enforcer.policy.defaults import DefaultPolicy
from sigil.enforcer.policy.effective_axes import AddressGroup, address_groups, port_columns
from sigil.enforcer.policy.identity_sources import AllOfSource, NamespacesSource
from sigil.enforcer.policy.index import PolicyIndex
from sigil.enforcer.policy.model import AuthorizationPolicy, ClusterAuthorizationPolicy, Policy
from sigil.enforcer.policy.network import IpAddress
from sigil.enforcer.policy.peer_classes import PeerClass, peer_classes
from sigil.enforcer.policy.peer_ids import WorkloadIdPattern
from sigil.enforcer.policy.scope import Workload, scoped
from sigil.enforcer.policy.selector import LabelSelector, Operator

__all__ = ["MAX_LABEL_SETS", "Case", "Difference", "differences"]

#: At most this many label combinations are tried per selector kind (pod, namespace).
MAX_LABEL_SETS = 256
_FRESH_NAMESPACE = "diff-unnamed-namespace"
_FRESH_VALUE = "diff-unnamed-value"


@dataclass(frozen=True, slots=True)
class Case:
    """One connection: a pod (namespace, labels, namespace labels), a peer class, a port, an address."""

    namespace: str
    labels: Mapping[str, str]
    namespace_labels: Mapping[str, str]
    peer: PeerClass
    port: int
    address: IpAddress | None
    address_group: str

    def to_dict(self) -> dict[str, object]:
        """The case as ``diff --json`` prints it."""
        return {
            "namespace": self.namespace,
            "labels": dict(self.labels),
            "namespace_labels": dict(self.namespace_labels),
            "peer": None if self.peer.representative is None else str(self.peer.representative),
            "peer_class": self.peer.kind.describe(self.peer.name),
            "port": self.port,
            "address": None if self.address is None else str(self.address),
            "address_group": self.address_group,
        }


@dataclass(frozen=True, slots=True)
class Difference:
    """A case the two sets decide differently, with each side's decision (explained)."""

    case: Case
    a: Decision
    b: Decision


def differences(
    a: Sequence[Policy],
    b: Sequence[Policy],
    *,
    trust_domain: TrustDomain,
    default: DefaultPolicy = DefaultPolicy.ALLOW,
    workload_ids: WorkloadIdPattern | None = None,
    namespaces: Mapping[str, Mapping[str, str]] | None = None,
) -> list[Difference]:
    """Every case on which ``a`` and ``b`` decide differently (allowed against denied); [] when equivalent."""
    both = [*a, *b]
    found: list[Difference] = []
    cases = _namespaces(both, namespaces)
    names = list(dict.fromkeys(name for name, _ in cases))
    pod_selectors = _pod_selectors(both)
    pod_label_sets = _distinct(_label_sets(pod_selectors), pod_selectors)
    for namespace, namespace_labels in cases:
        # Peers' namespaces carry the labels the target's has in this case, unless they are given.
        known: dict[str, Mapping[str, str]] = dict.fromkeys(names, namespace_labels)
        known.update(namespaces or {})
        known[namespace] = namespace_labels

        def index(
            policies: Sequence[Policy], known: Mapping[str, Mapping[str, str]] = known
        ) -> PolicyIndex:
            return PolicyIndex(
                policies,
                trust_domain=trust_domain,
                default=default,
                namespaces=known,
                workload_ids=workload_ids,
            )

        left, right, union = index(a), index(b), index(both)
        for labels in pod_label_sets:
            target = Target(namespace, labels)
            workload = Workload(namespace, labels, namespace_labels)
            selected = scoped(both, workload)
            rules = [rule for policy in selected for rule in policy.rules]
            ports = [
                port
                for p in selected
                if isinstance(p, AuthorizationPolicy)
                for port in p.target_ports or ()
            ]
            classes = peer_classes(union, rules, namespace, known=sorted(known))
            columns = port_columns(rules, target_ports=ports)
            groups = address_groups(rule.network for rule in rules if rule.network is not None)
            for peer, column, group in product(classes, columns, groups):
                found.extend(
                    _compare(left, right, target, namespace_labels, peer, column.asked, group)
                )
    return found


def _distinct(
    label_sets: Iterable[dict[str, str]], selectors: Sequence[LabelSelector]
) -> list[dict[str, str]]:
    """One label set per distinct answer of ``selectors``: only which of them match can change a decision."""
    seen: set[tuple[bool, ...]] = set()
    kept: list[dict[str, str]] = []
    for labels in label_sets:
        answer = tuple(selector.matches(labels) for selector in selectors)
        if answer not in seen:
            seen.add(answer)
            kept.append(labels)
    return kept


def _compare(
    left: PolicyIndex,
    right: PolicyIndex,
    target: Target,
    namespace_labels: Mapping[str, str],
    peer: PeerClass,
    port: int,
    group: AddressGroup,
) -> list[Difference]:
    representative: SpiffeId | None = peer.representative
    address = group.example
    if (
        left.decide(representative, target, port, address=address).allowed
        == right.decide(representative, target, port, address=address).allowed
    ):
        return []
    da = left.decide(representative, target, port, address=address, explain=True)
    db = right.decide(representative, target, port, address=address, explain=True)
    case = Case(
        target.namespace,
        dict(target.labels),
        dict(namespace_labels),
        peer,
        port,
        group.example,
        group.name,
    )
    return [Difference(case, da, db)]


def _namespaces(
    policies: Sequence[Policy], given: Mapping[str, Mapping[str, str]] | None
) -> list[tuple[str, dict[str, str]]]:
    names: list[str] = []
    selectors: list[LabelSelector] = []
    for policy in policies:
        if isinstance(policy, AuthorizationPolicy):
            names.append(policy.namespace)
        else:
            selectors.append(policy.namespace_selector)
    for selector in selectors:
        names.extend(_values_of(selector, NAMESPACE_NAME_LABEL))
    names = [*dict.fromkeys(names), _FRESH_NAMESPACE]
    cases: list[tuple[str, dict[str, str]]] = []
    # Namespace labels matter to cluster policies' namespaceSelectors and to Namespaces sources.
    selectors += [
        source.selector
        for policy in policies
        for rule in policy.rules
        for source in (*(rule.sources or ()), *rule.not_sources)
        for source in (source.members if isinstance(source, AllOfSource) else (source,))
        if isinstance(source, NamespacesSource)
    ]
    label_sets = _label_sets(selectors, skip=NAMESPACE_NAME_LABEL)
    for name in names:
        if given is not None and name in given:
            cases.append((name, dict(given[name])))
            continue
        named = [{**labels, NAMESPACE_NAME_LABEL: name} for labels in label_sets]
        for labels in _distinct(named, selectors):
            del labels[NAMESPACE_NAME_LABEL]
            cases.append((name, labels))
    return cases


def _pod_selectors(policies: Iterable[Policy]) -> list[LabelSelector]:
    found: list[LabelSelector] = []
    for policy in policies:
        if isinstance(policy, ClusterAuthorizationPolicy):
            found.append(policy.pod_selector)
        else:
            found.append(policy.selector)
    return found


def _values_of(selector: LabelSelector, key: str) -> list[str]:
    values = [value for k, value in selector.match_labels if k == key]
    for requirement in selector.match_expressions:
        if requirement.key == key:
            values.extend(sorted(requirement.values))
    return values


def _label_sets(selectors: Sequence[LabelSelector], *, skip: str = "") -> list[dict[str, str]]:
    """Label combinations that tell the ``selectors`` apart: each key absent, at a named value, or another."""
    values: dict[str, list[str | None]] = {}
    for selector in selectors:
        keys = [k for k, _ in selector.match_labels] + [r.key for r in selector.match_expressions]
        for key in keys:
            if key != skip:
                values.setdefault(key, [None, _FRESH_VALUE])
                for value in _values_of(selector, key):
                    if value not in values[key]:
                        values[key].append(value)
    keys = sorted(values)
    total = 1
    for key in keys:
        total *= len(values[key])
    if total <= MAX_LABEL_SETS:
        combos = product(*(values[key] for key in keys))
        return [
            {key: value for key, value in zip(keys, combo, strict=True) if value is not None}
            for combo in islice(combos, MAX_LABEL_SETS)
        ]
    # Too many: each selector's own combination (what it asks for), and no labels.
    sets: list[dict[str, str]] = [{}]
    for selector in selectors:
        labels = {k: v for k, v in selector.match_labels if k != skip}
        for requirement in selector.match_expressions:
            if requirement.key == skip:
                continue
            if requirement.operator is Operator.IN:
                labels[requirement.key] = sorted(requirement.values)[0]
            elif requirement.operator is Operator.EXISTS:
                labels[requirement.key] = _FRESH_VALUE
        if labels not in sets:
            sets.append(labels)
    return sets
