"""``sigil-enforcer effective``: the effective policy of a pod, from a directory of policy files.

The view itself is :mod:`sigil.enforcer.policy.effective`; this module reads the directory (naming each policy's
file and document, so the view can say where a rule lives), and prints the view as text for a person or as the
JSON the README documents. Exit codes follow ``sigil-enforcer``'s: 0 shown, 2 bad input (a refused policy
document included: a view that silently left out a policy would be wrong).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sigil.enforcer.flags import (
    TRUST_DOMAIN_VARIABLE,
    local_trust_domain,
    parse_pairs,
    port_argument,
)
from sigil.enforcer.policy.decision import Target, Verdict
from sigil.enforcer.policy.documents import PolicyKey
from sigil.enforcer.policy.effective import Cell, EffectivePolicy, effective
from sigil.enforcer.policy.loader import policy_files, read_file
from sigil.enforcer.policy.model import AuthorizationPolicy
from sigil.enforcer.policy.origin import Origin, OriginKind, policy_revision
from sigil.enforcer.policy.store import PolicySet, PolicyStore

__all__ = ["add_effective_command", "load_with_origins", "render_text"]

_EXIT_OK = 0
_EXIT_BAD_INPUT = 2


def add_effective_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare ``effective`` and its flags."""
    command = commands.add_parser(
        "effective",
        help="show every policy and rule that can apply to a pod, and who may connect on which port",
        description=(
            "Print the policies and rules selecting the pod in evaluation order, with their source, and the "
            "access table: each class of peer on each port some rule names and on every other port, with "
            "the rule that decides. Rules that can never decide are flagged as shadowed."
        ),
    )
    command.add_argument("--policies", required=True, type=Path, metavar="DIR")
    command.add_argument("--namespace", required=True, metavar="NS", help="the pod's namespace")
    command.add_argument("--labels", default="", metavar="K=V,...", help="the pod's labels")
    command.add_argument(
        "--namespace-labels",
        default="",
        metavar="K=V,...",
        help="the namespace's labels (kubernetes.io/metadata.name is always set)",
    )
    command.add_argument(
        "--port", type=port_argument, metavar="N", help="show this port only (default: every port)"
    )
    command.add_argument(
        "--trust-domain",
        metavar="TD",
        help=f"the local trust domain, which ServiceAccount sources name (env {TRUST_DOMAIN_VARIABLE})",
    )
    command.add_argument("--default", choices=("allow", "deny"), default="allow")
    command.add_argument("--output", choices=("text", "json"), default="text")
    command.set_defaults(run=_run_effective)


def _run_effective(args: argparse.Namespace) -> int:
    trust_domain = local_trust_domain(args.trust_domain)
    target = Target.parse(args.namespace, parse_pairs("--labels", args.labels))
    namespace_labels = parse_pairs("--namespace-labels", args.namespace_labels)
    snapshot, origins, errors = load_with_origins(args.policies)
    if errors:
        for error in errors:
            print(f"sigil-enforcer: {error}", file=sys.stderr)
        return _EXIT_BAD_INPUT
    view = effective(
        snapshot.policies,
        target,
        trust_domain=trust_domain,
        namespace_labels=namespace_labels,
        default_allow=args.default == "allow",
        port=args.port,
        origins=origins,
        revision=snapshot.revision,
    )
    if args.output == "json":
        print(json.dumps(view.to_dict(), indent=2))
    else:
        print(render_text(view))
    return _EXIT_OK


def load_with_origins(directory: Path) -> tuple[PolicySet, dict[PolicyKey, Origin], list[str]]:
    """The policies of ``directory`` as the store holds them, each one's file and document, and every refusal."""
    store = PolicyStore()
    origins: dict[PolicyKey, Origin] = {}
    errors: list[str] = []
    for path in policy_files(directory):
        result = read_file(path)
        errors.extend(str(error) for error in store.apply(result).errors)
        several = len(result.outcomes) > 1
        for number, outcome in enumerate(result.outcomes):
            if isinstance(outcome, Exception):
                continue
            origins.setdefault(
                outcome.key,
                Origin(
                    kind=OriginKind.FILE,
                    name=str(path),
                    document=number if several else None,
                    revision=policy_revision(outcome.canonical),
                ),
            )
    return store.current, origins, errors


def render_text(view: EffectivePolicy) -> str:
    """The view for a person: target, policies, rules, then the access table one peer class at a time."""
    target = view.target
    labels = ",".join(f"{k}={v}" for k, v in target.labels.items()) or "no labels"
    namespace_labels = ",".join(f"{k}={v}" for k, v in sorted(view.namespace_labels.items()))
    revision = "" if view.revision is None else f", policy revision {view.revision}"
    lines = [
        f"effective policy of a pod in namespace {target.namespace} ({labels})",
        f"  namespace labels: {namespace_labels}",
        f"  trust domain {view.trust_domain.name}, default "
        f"{'allow' if view.default_allow else 'deny'}{revision}",
        "",
        "policies, in evaluation order:" if view.policies else "no policy selects this pod",
    ]
    for entry in view.policies:
        policy = entry.policy
        if isinstance(policy, AuthorizationPolicy):
            what = f"namespace  AuthorizationPolicy {policy.ref} ({policy.action.value.upper()})"
        else:
            what = f"{policy.tier.value.lower():<10} ClusterAuthorizationPolicy {policy.name}, "
            what += f"priority {policy.priority}"
        flags = (" [dry-run]" if policy.dry_run else "") + (
            " [SHADOWED: can never decide]" if entry.shadowed else ""
        )
        lines.append(f"  {what}{flags}")
        lines.append(f"      from {entry.origin or 'an unknown source'}")
    if view.rules:
        lines += ["", "rules, in evaluation order:"]
    for rule in view.rules:
        match = rule.match
        ports = (
            "any port"
            if rule.rule.ports is None
            else "ports " + ",".join(str(port) for port in sorted(rule.rule.ports))
        )
        sources = (
            "any peer"
            if rule.rule.sources is None
            else ", ".join(str(s) for s in rule.rule.sources) or "nothing"
        )
        flags = (" [dry-run]" if match.dry_run else "") + (" [SHADOWED]" if rule.shadowed else "")
        lines.append(
            f"  {rule.order:>3}  {match.tier.value:<9} {match.policy} rule {match.rule}: "
            f"{match.effect.value} {sources} on {ports}{flags}"
        )
    lines += ["", "access:"]
    for row in view.rows:
        lines.append(f"  {row.peer.describe()}")
        lines.extend(f"    {_port_label(cell):<16} {_cell_text(cell)}" for cell in row.cells)
    return "\n".join(lines)


def _port_label(cell: Cell) -> str:
    return "other ports" if cell.port is None else f"port {cell.port}"


def _cell_text(cell: Cell) -> str:
    text = _verdict_text(cell.decision.verdict)
    shadow = cell.decision.shadow
    if shadow is not None and shadow != cell.decision.verdict:
        text += f"  (dry-run: would be {_verdict_text(shadow)})"
    return text


def _verdict_text(verdict: Verdict) -> str:
    answer = "allowed" if verdict.allowed else "denied"
    if verdict.policy is not None:
        return f"{answer} by {verdict.tier.value} {verdict.policy} rule {verdict.rule}"
    if verdict.tier.value == "default":
        return f"{answer} by the default"
    return f"{answer}: no rule of the namespace's ALLOW policies matched"
