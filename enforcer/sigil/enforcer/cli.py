"""``sigil-enforcer``: the enforcer's command line, one function pair per subcommand.

Each subcommand has an ``_add_<name>`` that declares its arguments and a ``_run_<name>`` that does the work
and returns the exit code; adding one (``proxy``, say) means writing that pair and listing it in
``_SUBCOMMANDS``. Exit codes: 0 success (``check``: allowed), 1 a negative answer (``check``: denied;
``crds --check``: stale files), 2 bad input — argparse's own code for usage errors, and ours for every
:class:`~sigil.ca.errors.SigilError`, mapped in one place in :func:`main`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from sigil.ca.errors import SigilError
from sigil.ca.spiffe_id import SpiffeId
from sigil.enforcer.diff_command import add_diff_command
from sigil.enforcer.effective_command import add_effective_command, report_findings
from sigil.enforcer.extauthz.command import add_ext_authz_command
from sigil.enforcer.flags import (
    DEFAULT_TRUST_DOMAIN,
    TRUST_DOMAIN_VARIABLE,
    add_decision_arguments,
    add_translation_arguments,
    local_trust_domain,
    parse_pairs,
    port_argument,
    translate_options,
)
from sigil.enforcer.import_command import add_import_command
from sigil.enforcer.policy.crds import crd_documents, render, write_crds
from sigil.enforcer.policy.decision import Decision, Target
from sigil.enforcer.policy.defaults import DefaultPolicy
from sigil.enforcer.policy.model import Policy
from sigil.enforcer.policy.network import parse_peer_address
from sigil.enforcer.policy.peer_ids import WorkloadIdPattern
from sigil.enforcer.policy.reading import read_policies
from sigil.enforcer.proxy.command import add_proxy_command

__all__ = ["build_parser", "main"]

EXIT_OK = 0
EXIT_NO = 1
EXIT_BAD_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand (deploy tests check the manifests' arguments against it)."""
    parser = argparse.ArgumentParser(prog="sigil-enforcer", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _SUBCOMMANDS:
        add(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``sigil-enforcer`` with ``argv`` (default: the process's arguments); returns the exit code."""
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except SigilError as err:
        print(f"sigil-enforcer: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT


# --------------------------------------------------------------------------- check


def _add_check(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    check = commands.add_parser(
        "check",
        help="decide one connection against a directory of policies",
        description="Print 'allowed' or 'denied'; exit 0 when allowed, 1 when denied, 2 on bad input.",
    )
    check.add_argument("--policies", required=True, type=Path, metavar="DIR")
    check.add_argument("--peer", required=True, metavar="SPIFFE_ID|none")
    check.add_argument(
        "--namespace", required=True, metavar="NS", help="the target pod's namespace"
    )
    check.add_argument("--labels", default="", metavar="K=V,...", help="the target pod's labels")
    check.add_argument(
        "--namespace-labels",
        default="",
        metavar="K=V,...",
        help="the target namespace's labels (kubernetes.io/metadata.name is always set)",
    )
    check.add_argument("--port", required=True, type=port_argument, metavar="N")
    check.add_argument(
        "--trust-domain",
        metavar="TD",
        help=(
            "the local trust domain, which ServiceAccount sources name "
            f"(env {TRUST_DOMAIN_VARIABLE}; default {DEFAULT_TRUST_DOMAIN})"
        ),
    )
    check.add_argument(
        "--peer-address",
        metavar="IP",
        help="the peer's IPv4 or IPv6 address (rules with sourceCIDRs match only when it is given)",
    )
    add_decision_arguments(check)
    add_translation_arguments(check)
    check.add_argument(
        "--explain", action="store_true", help="say which tier, policy and rule decided"
    )
    check.add_argument("--output", choices=("text", "json"), default="text")
    check.set_defaults(run=_run_check)


def _run_check(args: argparse.Namespace) -> int:
    trust_domain = local_trust_domain(args.trust_domain)
    peer = None if args.peer.lower() == "none" else SpiffeId.parse(args.peer)
    address = None if args.peer_address is None else parse_peer_address(args.peer_address)
    target = Target.parse(args.namespace, parse_pairs("--labels", args.labels))
    namespace_labels = parse_pairs("--namespace-labels", args.namespace_labels)
    found = read_policies([args.policies], options=translate_options(args, trust_domain))
    report_findings(found.findings)
    if found.errors:
        for error in found.errors:
            print(f"sigil-enforcer: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    index = found.policies.compile(
        trust_domain=trust_domain,
        default=DefaultPolicy(args.default),
        namespaces={args.namespace: namespace_labels},
        workload_ids=WorkloadIdPattern(args.workload_id_template),
    )
    decision = index.decide(peer, target, args.port, address=address, explain=args.explain)
    if args.output == "json":
        print(json.dumps(decision.to_dict(), indent=2 if args.explain else None))
    else:
        print(_text(decision, found.policies.policies, explain=args.explain))
    return EXIT_OK if decision.allowed else EXIT_NO


def _text(decision: Decision, policies: tuple[Policy, ...], *, explain: bool) -> str:
    answer = "allowed" if decision.allowed else "denied"
    if not explain:
        return answer
    lines = [
        answer,
        f"  tier:   {decision.tier.value}",
        f"  policy: {decision.policy or '-'}",
        f"  rule:   {'-' if decision.rule is None else decision.rule}",
        f"  reason: {decision.reason}",
    ]
    lines.extend(
        f"  matched: {m.tier.value} {m.policy} rule {m.rule} ({m.effect.value})"
        for m in decision.matches
    )
    if decision.verdict.audit:
        lines.append("  audit:  the deny default would have denied this")
    escapable = [
        p.ref
        for p in policies
        if p.relabel_escapable and any(m.policy == p.ref for m in decision.matches)
    ]
    lines.extend(
        f"  warning: {ref} selects pods by labels their namespace's owner can change; "
        "relabelling a pod escapes it"
        for ref in escapable
    )
    if decision.shadow is not None:
        shadow = "allowed" if decision.shadow.allowed else "denied"
        lines.append(f"  dry-run: would be {shadow} ({decision.shadow.reason})")
        lines.extend(
            f"  dry-run matched: {m.tier.value} {m.policy} rule {m.rule} ({m.effect.value})"
            for m in decision.dry_run
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- crds


def _add_crds(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    crds = commands.add_parser(
        "crds",
        help="print, write or check the CustomResourceDefinitions",
        description="Without options, print both CRDs to stdout.",
    )
    mode = crds.add_mutually_exclusive_group()
    mode.add_argument("--write", type=Path, metavar="DIR", help="write the CRD files into DIR")
    mode.add_argument("--check", type=Path, metavar="DIR", help="exit 1 if DIR's files are stale")
    crds.set_defaults(run=_run_crds)


def _run_crds(args: argparse.Namespace) -> int:
    if args.write is not None:
        for path in write_crds(args.write):
            print(path)
        return EXIT_OK
    documents = crd_documents()
    if args.check is not None:
        stale = [
            name
            for name, crd in documents.items()
            if not (args.check / name).is_file()
            or (args.check / name).read_text(encoding="utf-8") != render(crd)
        ]
        for name in stale:
            print(
                f"sigil-enforcer: {args.check / name} is stale; run crds --write", file=sys.stderr
            )
        return EXIT_NO if stale else EXIT_OK
    print("---\n".join(render(crd) for crd in documents.values()), end="")
    return EXIT_OK


_SUBCOMMANDS: tuple[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None], ...] = (
    _add_check,
    _add_crds,
    add_effective_command,  # ``effective`` has its own module: the view's text form is most of it
    add_diff_command,  # so do ``diff`` and ``import``
    add_import_command,
    add_proxy_command,  # ``proxy`` lives in the proxy package: it is most of a server
    add_ext_authz_command,  # so does ``ext-authz``, in the extauthz package
)
