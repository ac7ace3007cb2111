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
    add_decision_arguments,
    local_trust_domain,
    parse_pairs,
    port_argument,
)
from sigil.enforcer.policy.decision import Target
from sigil.enforcer.policy.defaults import DefaultPolicy
from sigil.enforcer.policy.documents import PolicyKey
from sigil.enforcer.policy.effective import effective
from sigil.enforcer.policy.effective_text import render_text
from sigil.enforcer.policy.loader import policy_files, read_file
from sigil.enforcer.policy.origin import Origin, OriginKind, policy_revision
from sigil.enforcer.policy.peer_ids import WorkloadIdPattern
from sigil.enforcer.policy.store import PolicySet, PolicyStore

__all__ = ["add_effective_command", "load_with_origins"]

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
    add_decision_arguments(command)
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
        default=DefaultPolicy(args.default),
        workload_ids=WorkloadIdPattern(args.workload_id_template),
        port=args.port,
        origins=origins,
        revision=snapshot.revision,
    )
    if args.output == "json":
        print(json.dumps(view.to_dict(), indent=2))
    else:
        print(render_text(view.to_dict()))
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
