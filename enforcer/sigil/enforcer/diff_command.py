"""``sigil-enforcer diff A B``: whether two policy sets, of any dialect mix, decide every connection the same.

The comparison is :mod:`sigil.enforcer.policy.diff`; this module reads both sets (files or directories; Istio's
and Linkerd's documents translated as ``check`` translates them), prints each case they decide differently with
the deciding rule of each side and where that rule lives, as text or JSON. Exit codes: 0 equivalent, 1 they
differ, 2 bad input (a refused document included: a comparison that silently left a policy out would lie).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from sigil.enforcer.effective_command import report_findings
from sigil.enforcer.flags import (
    TRUST_DOMAIN_VARIABLE,
    add_decision_arguments,
    add_translation_arguments,
    local_trust_domain,
    translate_options,
)
from sigil.enforcer.policy.decision import Decision
from sigil.enforcer.policy.defaults import DefaultPolicy
from sigil.enforcer.policy.diff import Difference, differences
from sigil.enforcer.policy.documents import PolicyKey
from sigil.enforcer.policy.origin import Origin
from sigil.enforcer.policy.peer_ids import WorkloadIdPattern
from sigil.enforcer.policy.reading import ReadPolicies, read_policies

__all__ = ["add_diff_command"]

_EXIT_SAME = 0
_EXIT_DIFFERENT = 1
_EXIT_BAD_INPUT = 2


def add_diff_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare ``diff`` and its flags."""
    command = commands.add_parser(
        "diff",
        help="compare two policy sets (any mix of Sigil, Istio and Linkerd) on every distinct case",
        description=(
            "Decide every distinct case that can make a difference (pods the selectors of either set tell "
            "apart, and for each the peer classes, port columns and address groups of both sets' rules) "
            "under both sets, and print each case they decide differently with the deciding rule on each "
            "side. Exit 0 when equivalent, 1 when they differ, 2 on bad input."
        ),
    )
    command.add_argument("a", type=Path, metavar="A", help="a policy file or directory")
    command.add_argument("b", type=Path, metavar="B", help="a policy file or directory")
    command.add_argument(
        "--trust-domain",
        metavar="TD",
        help=f"the local trust domain, which ServiceAccount sources name (env {TRUST_DOMAIN_VARIABLE})",
    )
    add_decision_arguments(command)
    add_translation_arguments(command)
    command.add_argument("--json", action="store_true", help="print the differences as JSON")
    command.set_defaults(run=_run_diff)


def _run_diff(args: argparse.Namespace) -> int:
    trust_domain = local_trust_domain(args.trust_domain)
    options = translate_options(args, trust_domain)
    sides = [read_policies([path], options=options) for path in (args.a, args.b)]
    bad = False
    for side in sides:
        report_findings(side.findings)
        for error in side.errors:
            print(f"sigil-enforcer: {error}", file=sys.stderr)
            bad = True
    if bad:
        return _EXIT_BAD_INPUT
    a, b = sides
    found = differences(
        a.policies.policies,
        b.policies.policies,
        trust_domain=trust_domain,
        default=DefaultPolicy(args.default),
        workload_ids=WorkloadIdPattern(args.workload_id_template),
    )
    if args.json:
        print(
            json.dumps(
                {"equivalent": not found, "differences": [_dict(d, a, b) for d in found]}, indent=2
            )
        )
    elif not found:
        print(f"equivalent: {args.a} and {args.b} decide every case the same")
    else:
        for difference in found:
            print(_text(difference, a, b))
        print(f"{len(found)} case(s) decided differently")
    return _EXIT_DIFFERENT if found else _EXIT_SAME


def _decider(decision: Decision, side: ReadPolicies) -> dict[str, Any]:
    verdict = decision.verdict
    data: dict[str, Any] = {
        "decision": "allowed" if verdict.allowed else "denied",
        "tier": verdict.tier.value,
        "policy": verdict.policy,
        "rule": verdict.rule,
        "reason": verdict.reason,
        "origin": None,
    }
    origin = _origin_of(verdict.policy, verdict.tier.value, side)
    if origin is not None:
        data["origin"] = str(origin)
    return data


def _origin_of(ref: str | None, tier: str, side: ReadPolicies) -> Origin | None:
    if ref is None:
        return None
    if tier == "namespace":
        namespace, _, name = ref.partition("/")
        key: PolicyKey = ("AuthorizationPolicy", namespace, name)
    else:
        key = ("ClusterAuthorizationPolicy", "", ref)
    return side.origins.get(key)


def _dict(difference: Difference, a: ReadPolicies, b: ReadPolicies) -> dict[str, Any]:
    return {
        "case": difference.case.to_dict(),
        "a": _decider(difference.a, a),
        "b": _decider(difference.b, b),
    }


def _text(difference: Difference, a: ReadPolicies, b: ReadPolicies) -> str:
    case = difference.case
    labels = ",".join(f"{k}={v}" for k, v in case.labels.items()) or "no labels"
    namespace_labels = ",".join(f"{k}={v}" for k, v in case.namespace_labels.items()) or "none"
    peer = "no SVID" if case.peer.representative is None else str(case.peer.representative)
    lines = [
        f"pod in {case.namespace} ({labels}; namespace labels {namespace_labels}), port {case.port}, "
        f"peer {case.peer.kind.describe(case.peer.name)} [as {peer}], address {case.address_group}",
    ]
    for name, decision, side in (("A", difference.a, a), ("B", difference.b, b)):
        decider = _decider(decision, side)
        where = f" ({decider['origin']})" if decider["origin"] else ""
        lines.append(f"  {name}: {decider['decision']}: {decider['reason']}{where}")
    return "\n".join(lines)
