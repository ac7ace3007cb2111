"""Which rules of a target can decide at all: the "shadowed" flag of the effective view.

The effective view (:mod:`sigil.enforcer.policy.effective`) holds, explained, the decision for every class of peer
on every port, which together cover every connection the target can receive. A rule that decides none of them
can never decide a connection: an earlier tier or rule always decides first, so it is *shadowed*. Three things
count as deciding (authz.md part 7): being the rule a verdict names; being an admin ``Pass`` rule that is the
first admin rule to match (it hands the decision to the namespace tier); and, for the ALLOW policies of the
namespace tier, a denial because none of their rules matched (deny-if-not-allowed). Dry-run rules are credited
only by the shadow pass, as they would decide if enforced; enforced ones only by the enforcing pass.
"""

from __future__ import annotations

from collections.abc import Iterable

from sigil.enforcer.policy.decision import Decision, Match, Tier, Verdict
from sigil.enforcer.policy.model import AuthorizationPolicy, Effect, Policy

__all__ = ["Place", "deciding_rules"]

Place = tuple[Tier, str, int]
"""A rule's place: its tier, its policy's ref, its number in the policy (-1: the ALLOW policy as a whole)."""


def deciding_rules(
    order: tuple[Match, ...], selected: Iterable[Policy], decisions: Iterable[Decision]
) -> set[Place]:
    """Every rule that decides one of ``decisions`` (explained ones; rule -1 of an ALLOW policy: it denied by
    deny-if-not-allowed). ``order`` is the evaluation order, ``selected`` every policy selecting the target."""
    position = {match: n for n, match in enumerate(order)}
    allows = [
        p for p in selected if isinstance(p, AuthorizationPolicy) and p.action is Effect.ALLOW
    ]
    live: set[Place] = set()
    for decision in decisions:
        live |= _decided_by(decision.verdict, decision.matches, order, allows, shadow=False)
        if decision.shadow is not None:
            both = sorted({*decision.matches, *decision.dry_run}, key=position.__getitem__)
            live |= _decided_by(decision.shadow, tuple(both), order, allows, shadow=True)
    return live


def _decided_by(
    verdict: Verdict,
    matched: tuple[Match, ...],
    order: tuple[Match, ...],
    allows: list[AuthorizationPolicy],
    *,
    shadow: bool,
) -> set[Place]:
    """The rules one pass credits: its decider, a Pass it went through, or every ALLOW policy on NO_RULE."""
    found: set[Place] = set()
    admin = [m for m in matched if m.tier is Tier.ADMIN]
    if admin and admin[0].effect is Effect.PASS and admin[0].dry_run == shadow:
        found.add((Tier.ADMIN, admin[0].policy, admin[0].rule))
    if verdict.policy is not None and verdict.rule is not None:
        decider = next(
            m
            for m in order
            if (m.tier, m.policy, m.rule) == (verdict.tier, verdict.policy, verdict.rule)
        )
        if decider.dry_run == shadow:
            found.add((verdict.tier, verdict.policy, verdict.rule))
    elif verdict.tier is Tier.NAMESPACE:
        # Deny-if-not-allowed: each pass credits its own ALLOW policies (enforced, or dry-run).
        found |= {(Tier.NAMESPACE, p.ref, -1) for p in allows if p.dry_run == shadow}
    return found
