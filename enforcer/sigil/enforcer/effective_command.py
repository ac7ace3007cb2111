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
from collections.abc import Iterable
from pathlib import Path

from sigil.enforcer.flags import (
    TRUST_DOMAIN_VARIABLE,
    add_decision_arguments,
    add_translation_arguments,
    local_trust_domain,
    parse_pairs,
    port_argument,
    translate_options,
)
from sigil.enforcer.policy.decision import Target
from sigil.enforcer.policy.defaults import DefaultPolicy
from sigil.enforcer.policy.dialects.base import Exactness, Finding, TranslateOptions
from sigil.enforcer.policy.documents import PolicyKey
from sigil.enforcer.policy.effective import effective
from sigil.enforcer.policy.effective_text import render_text
from sigil.enforcer.policy.origin import Origin
from sigil.enforcer.policy.peer_ids import WorkloadIdPattern
from sigil.enforcer.policy.reading import read_policies
from sigil.enforcer.policy.store import PolicySet

__all__ = ["add_effective_command", "load_with_origins", "report_findings"]

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
    add_translation_arguments(command)
    command.add_argument("--output", choices=("text", "json"), default="text")
    command.set_defaults(run=_run_effective)


def report_findings(findings: Iterable[Finding]) -> None:
    """Say on stderr what a translation of Istio's or Linkerd's policy did not translate exactly."""
    for finding in findings:
        if finding.exactness is not Exactness.EXACT:
            print(f"sigil-enforcer: warning: {finding}", file=sys.stderr)


def _run_effective(args: argparse.Namespace) -> int:
    trust_domain = local_trust_domain(args.trust_domain)
    target = Target.parse(args.namespace, parse_pairs("--labels", args.labels))
    namespace_labels = parse_pairs("--namespace-labels", args.namespace_labels)
    found = read_policies([args.policies], options=translate_options(args, trust_domain))
    report_findings(found.findings)
    if found.errors:
        for error in found.errors:
            print(f"sigil-enforcer: {error}", file=sys.stderr)
        return _EXIT_BAD_INPUT
    snapshot, origins = found.policies, found.origins
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


def load_with_origins(
    directory: Path, *, options: TranslateOptions | None = None
) -> tuple[PolicySet, dict[PolicyKey, Origin], list[str]]:
    """The policies of ``directory`` as the store holds them, each one's file and document, and every refusal."""
    found = read_policies([directory], options=options or TranslateOptions())
    return found.policies, found.origins, list(found.errors)
