"""One target's rules, numbered in evaluation order and filed under the peer keys they name.

Numbering every rule in the order authz.md part 7 consults it (admin rules by priority, name and position;
then namespace DENY rules; then namespace ALLOW rules; then baseline rules) turns "the first matching rule
decides" into "the lowest matching number decides". A decision keeps two minimums — the lowest admin match
and the lowest match outside the admin tier — and compares them with the bounds of each tier. This is the hot
path of the enforcer, so :meth:`Table.outcome` is written for CPython's speed rather than for elegance.
"""

from __future__ import annotations

from collections.abc import Iterable

from sigil.enforcer.policy.condition import Condition
from sigil.enforcer.policy.decision import Decision, Match, Tier, Verdict
from sigil.enforcer.policy.defaults import DefaultPolicy
from sigil.enforcer.policy.model import Effect

__all__ = ["ANY_PEER", "DEFAULT", "DEFAULT_REFUSED", "NO_RULE", "Table"]

# The key of rules with no ``sources``: they match any peer, even one without an SVID. A NUL cannot occur
# in a SPIFFE ID, so it never collides with one.
ANY_PEER = "\0any"
# Outcomes that are not a rule's number.
NO_RULE = -1  # an ALLOW policy selects the target and none of its rules matched
DEFAULT = -2  # nothing decided: the configured default applies (and admits this peer)
DEFAULT_REFUSED = (
    -3
)  # nothing decided, and the default (deny, [local-]authenticated) refuses this peer
_NONE = 1 << 62


_Entry = tuple[int, frozenset[int] | None, Condition | None]
_NO_NETWORKS: frozenset[int] = frozenset()


class Table:
    """Built by :class:`~sigil.enforcer.policy.index.PolicyIndex` (``add``, ``close_*``, ``freeze``), then read-only."""

    __slots__ = (
        "_admin_end",
        "_allow_end",
        "_allow_everywhere",
        "_allow_ports",
        "_building",
        "_by_key",
        "_deny_end",
        "_has_prefixes",
        "_passes",
        "_verdicts",
        "allow_policies",
        "decisions",
        "default",
        "default_allow",
        "rules",
    )

    def __init__(self, *, default_allow: bool, default: DefaultPolicy | None = None) -> None:
        self.default = DefaultPolicy.of(allow=default_allow) if default is None else default
        self.default_allow = self.default is not DefaultPolicy.DENY
        self.rules: list[Match] = []
        self.allow_policies: list[str] = []
        # The ports on which an ALLOW policy selects the target (targetRefs[].ports), unless one selects it
        # on every port.
        self._allow_everywhere = False
        self._allow_ports: frozenset[int] = frozenset()
        self._building: dict[str, list[_Entry]] = {}
        self._by_key: dict[str, tuple[_Entry, ...]] = {}
        self._passes: frozenset[int] = frozenset()
        self._admin_end = self._deny_end = self._allow_end = 0
        self._has_prefixes = False
        self._verdicts: dict[int, Verdict] = {}
        # Plain decisions by outcome, filled on first use; NO_RULE and DEFAULT (-1, -2) index from the end.
        self.decisions: list[Decision | None] = []

    def add(
        self,
        match: Match,
        keys: Iterable[str],
        ports: frozenset[int] | None,
        condition: Condition | None = None,
    ) -> None:
        """File the next rule (in evaluation order) under each of ``keys``; a rule with a ``condition``
        passes None as ``ports`` and lets the condition check them."""
        order = len(self.rules)
        self.rules.append(match)
        for key in keys:
            self._building.setdefault(key, []).append((order, ports, condition))

    def add_allow_policy(self, ref: str, ports: frozenset[int] | None) -> None:
        """An ALLOW policy selects the target, on ``ports`` (None: every port): there, deny unless allowed."""
        self.allow_policies.append(ref)
        if ports is None:
            self._allow_everywhere = True
        else:
            self._allow_ports |= ports

    def file_more(
        self, keys: Iterable[str], ports: frozenset[int] | None, condition: Condition | None
    ) -> None:
        """File the rule added last under more ``keys``, with its own ``condition`` (an AllOf source)."""
        order = len(self.rules) - 1
        for key in keys:
            self._building.setdefault(key, []).append((order, ports, condition))

    def close_admin(self) -> None:
        """Rules added so far are the admin tier's."""
        self._admin_end = len(self.rules)

    def close_namespace_deny(self) -> None:
        """Rules added since :meth:`close_admin` are namespace DENY rules."""
        self._deny_end = len(self.rules)

    def close_namespace_allow(self) -> None:
        """Rules added since :meth:`close_namespace_deny` are namespace ALLOW rules; the rest are baseline."""
        self._allow_end = len(self.rules)

    def freeze(self) -> None:
        """Finish building: entries were appended in ascending order, so each key's tuple is sorted."""
        self._by_key = {key: tuple(entries) for key, entries in self._building.items()}
        self._building = {}
        self._has_prefixes = any(key.endswith("/*") for key in self._by_key)
        self.decisions = [None] * (len(self.rules) + 3)
        self._passes = frozenset(
            order for order, match in enumerate(self.rules) if match.effect is Effect.PASS
        )

    def outcome(
        self,
        keys: tuple[str, ...],
        prefixes: tuple[str, ...],
        port: int,
        networks: frozenset[int] = _NO_NETWORKS,
    ) -> int:
        """The number of the deciding rule, :data:`NO_RULE` or :data:`DEFAULT`.

        ``keys`` are the peer's exact keys, ``prefixes`` its ``/*`` keys, looked up only when some rule
        of this table names a prefix (most tables do not, and it saves most of the lookups). ``networks``
        are the numbers of the source networks the peer's address is in.
        """
        by_key = self._by_key
        admin_end = self._admin_end
        best_admin = best_other = _NONE
        if self._has_prefixes:
            keys += prefixes
        for key in keys:
            entries = by_key.get(key)
            if entries is None:
                continue
            for order, ports, condition in entries:
                if ports is not None and port not in ports:
                    continue
                if condition is not None and not condition.holds(port, networks, keys, prefixes):
                    continue
                if order < admin_end:
                    if order < best_admin:
                        best_admin = order
                else:
                    if order < best_other:
                        best_other = order
                    break  # entries ascend: the rest of this key cannot beat this one
        if best_admin != _NONE and best_admin not in self._passes:
            return best_admin  # step 1: Allow or Deny; a Pass falls through to step 2
        if best_other < self._allow_end:
            return best_other  # step 2: DENY numbers come before ALLOW numbers
        if self._allow_everywhere or port in self._allow_ports:
            return NO_RULE  # step 2: deny-if-not-allowed
        return best_other if best_other != _NONE else DEFAULT  # steps 3 and 4

    def matches(
        self,
        keys: tuple[str, ...],
        prefixes: tuple[str, ...],
        port: int,
        networks: frozenset[int] = _NO_NETWORKS,
    ) -> tuple[Match, ...]:
        """Every rule that matches, in evaluation order (for explanations; not the hot path)."""
        orders = {
            order
            for key in keys + prefixes
            for order, ports, condition in self._by_key.get(key, ())
            if (ports is None or port in ports)
            and (condition is None or condition.holds(port, networks, keys, prefixes))
        }
        return tuple(self.rules[order] for order in sorted(orders))

    def ports_named(self, keys: tuple[str, ...], prefixes: tuple[str, ...]) -> set[int]:
        """Every port named by a rule filed under these keys: only these can change the outcome."""
        ports: set[int] = set(self._allow_ports)
        for key in keys + prefixes:
            for _, named, condition in self._by_key.get(key, ()):
                if named is not None:
                    ports |= named
                elif condition is not None:
                    ports |= condition.named
        return ports

    def ranges_named(
        self, keys: tuple[str, ...], prefixes: tuple[str, ...]
    ) -> set[tuple[int, int]]:
        """Every port range named by a rule filed under these keys."""
        return {
            span
            for key in keys + prefixes
            for _, _, condition in self._by_key.get(key, ())
            if condition is not None
            for span in condition.named_spans
        }

    def verdict(self, outcome: int) -> Verdict:
        """The verdict an :meth:`outcome` stands for (cached: there are few per table)."""
        verdict = self._verdicts.get(outcome)
        if verdict is None:
            verdict = self._verdicts[outcome] = self._explain(outcome)
        return verdict

    def decision(self, outcome: int) -> Decision:
        """A plain decision for ``outcome``, shared between calls since decisions are immutable."""
        decision = self.decisions[outcome]
        if decision is None:
            decision = self.decisions[outcome] = Decision(self.verdict(outcome))
        return decision

    def _explain(self, outcome: int) -> Verdict:
        if outcome in (DEFAULT, DEFAULT_REFUSED):
            admitted = outcome == DEFAULT and self.default is not DefaultPolicy.DENY
            reason = self.default.reason(admitted=admitted)
            audit = self.default is DefaultPolicy.AUDIT
            return Verdict(admitted, Tier.DEFAULT, None, None, reason, audit=audit)
        if outcome == NO_RULE:
            names = ", ".join(self.allow_policies)
            reason = f"no rule of the ALLOW policies selecting the target matched ({names})"
            return Verdict(False, Tier.NAMESPACE, None, None, reason)
        match = self.rules[outcome]
        allowed = match.effect is Effect.ALLOW
        kind = (
            "AuthorizationPolicy" if match.tier is Tier.NAMESPACE else "ClusterAuthorizationPolicy"
        )
        verb = "allows" if allowed else "denies"
        reason = f"rule {match.rule} of {kind} {match.policy} ({match.tier.value} tier) {verb}"
        return Verdict(allowed, match.tier, match.policy, match.rule, reason)
