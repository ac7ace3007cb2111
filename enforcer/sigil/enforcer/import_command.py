"""``sigil-enforcer import istio|linkerd``: another mesh's policy written out as Sigil resources, with a report.

The files and directories named with ``-f`` are read as YAML; the documents of the named dialect's API group
are translated in one batch (:mod:`sigil.enforcer.policy.dialects`), and each Sigil document that comes out is
judged as any policy is (a translator bug must not write a file Sigil would refuse). With ``--output DIR`` each
document is written to its own file, named by kind, namespace and name, and the report goes to
``DIR/report.json`` as well as to stdout; without it the documents go to stdout as one YAML stream and the
report to stderr. Documents of other groups are skipped, and the report says so.

Exit codes: 0 when everything was translated exactly, 1 when anything was approximated or refused (the
report says what), 2 on bad input (unreadable or non-YAML files, no document of the dialect at all).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from sigil.enforcer.errors import EnforcerError, PolicyError, PolicySourceError, PolicyYamlError
from sigil.enforcer.flags import (
    TRUST_DOMAIN_VARIABLE,
    add_translation_arguments,
    local_trust_domain,
    translate_options,
)
from sigil.enforcer.policy.dialects.base import (
    Dialect,
    Exactness,
    Finding,
    SourcedDocument,
    Translation,
    context_kind,
    dialect_for,
    dialect_named,
    foreign_group,
    takes_context,
)
from sigil.enforcer.policy.foreign import sourced
from sigil.enforcer.policy.loader import load_documents, policy_files
from sigil.enforcer.policy.model import parse_policy
from sigil.enforcer.policy.schema import Where

__all__ = ["add_import_command"]

_EXIT_EXACT = 0
_EXIT_INEXACT = 1
_EXIT_BAD_INPUT = 2


def add_import_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare ``import`` and its flags."""
    command = commands.add_parser(
        "import",
        help="translate Istio's or Linkerd's authorization policy into Sigil resources",
        description=(
            "Translate the named dialect's documents into Sigil resources, one per source object where "
            "possible, each annotated with authz.sigil.dev/translated-from, and report everything not "
            "translated exactly. Exit 0 when exact, 1 when anything was approximated or refused, 2 on bad input."
        ),
    )
    command.add_argument(
        "dialect", choices=("istio", "linkerd"), help="the mesh whose policy to read"
    )
    command.add_argument(
        "-f",
        "--filename",
        dest="paths",
        action="append",
        required=True,
        type=Path,
        metavar="FILE_OR_DIR",
        help="a YAML file or a directory of them (repeatable)",
    )
    command.add_argument(
        "--trust-domain",
        metavar="TD",
        help=f"the local trust domain Istio's and Linkerd's identities map to (env {TRUST_DOMAIN_VARIABLE})",
    )
    add_translation_arguments(command)
    command.add_argument(
        "--output",
        type=Path,
        metavar="DIR",
        help="write one file per resource and report.json here",
    )
    command.set_defaults(run=_run_import)


def _run_import(args: argparse.Namespace) -> int:
    dialect = dialect_named(args.dialect)
    options = translate_options(args, local_trust_domain(args.trust_domain))
    documents, skipped = _read(args.paths, dialect)
    if not documents:
        raise PolicySourceError(
            ", ".join(map(str, args.paths)), f"no {dialect.name} document found"
        )
    translation = dialect.translate(documents, options)
    invalid = _invalid(translation)
    report = _report(dialect, translation, skipped, invalid)
    text = _report_text(report, translation.findings)
    written = [t.document for t in translation.documents]
    if args.output is None:
        print(yaml.safe_dump_all([dict(d) for d in written], sort_keys=False), end="")
        print(text, file=sys.stderr)
    else:
        args.output.mkdir(parents=True, exist_ok=True)
        for document in written:
            (args.output / _file_name(document)).write_text(
                yaml.safe_dump(dict(document), sort_keys=False), encoding="utf-8"
            )
        (args.output / "report.json").write_text(
            json.dumps(report, indent=2) + "\n", encoding="utf-8"
        )
        print(text)
    return _EXIT_EXACT if report["exact"] else _EXIT_INEXACT


def _read(paths: list[Path], dialect: Dialect) -> tuple[list[SourcedDocument], list[str]]:
    documents: list[SourcedDocument] = []
    skipped: list[str] = []
    for path in paths:
        files = policy_files(path) if path.is_dir() else [path]
        for file in files:
            try:
                text = file.read_text(encoding="utf-8")
            except OSError as err:
                raise PolicySourceError(str(file), err.strerror or str(err)) from err
            try:
                loaded = load_documents(text, file=str(file))
            except PolicyYamlError as err:
                raise PolicySourceError(str(file), f"not YAML ({err})") from err
            several = len(loaded) > 1
            for number, document in enumerate(loaded):
                where = sourced(Where(str(file), number if several else None))
                group = foreign_group(document)
                if group is not None and _is(dialect, document):
                    documents.append(SourcedDocument(document, where))
                elif context_kind(document) is not None and takes_context(dialect.name):
                    # A Linkerd namespace's default-policy annotation, a workload's named ports.
                    documents.append(SourcedDocument(document, where))
                else:
                    skipped.append(where)
    return documents, skipped


def _is(dialect: Dialect, document: object) -> bool:
    found = dialect_for(document)
    return found is not None and found.name == dialect.name


def _invalid(translation: Translation) -> list[EnforcerError]:
    errors: list[EnforcerError] = []
    for translated in translation.documents:
        try:
            parse_policy(translated.document, where=Where(", ".join(translated.sources)))
        except PolicyError as err:
            errors.append(err)
    return errors


def _report(
    dialect: Dialect, translation: Translation, skipped: list[str], invalid: list[EnforcerError]
) -> dict[str, Any]:
    return {
        "dialect": dialect.name,
        "exact": translation.exact and not invalid,
        "resources": [
            {"file": _file_name(t.document), "sources": list(t.sources)}
            for t in translation.documents
        ],
        "findings": [_finding(f) for f in translation.findings],
        "invalid": [str(error) for error in invalid],
        "skipped": skipped,
    }


def _finding(finding: Finding) -> dict[str, str]:
    return {
        "source": finding.source,
        "where": finding.where,
        "path": finding.path,
        "exactness": finding.exactness.value,
        "message": finding.message,
    }


def _report_text(report: dict[str, Any], findings: tuple[Finding, ...]) -> str:
    lines = [f"{len(report['resources'])} Sigil resource(s) from {report['dialect']}"]
    lines.extend(f"  {finding}" for finding in findings if finding.exactness is not Exactness.EXACT)
    lines.extend(f"  invalid translation: {error}" for error in report["invalid"])
    lines.extend(f"  skipped (not {report['dialect']}): {where}" for where in report["skipped"])
    lines.append("exact" if report["exact"] else "NOT exact: see the findings above")
    return "\n".join(lines)


def _file_name(document: Any) -> str:
    metadata = document.get("metadata") or {}
    kind = str(document.get("kind", "resource")).lower()
    parts = [kind, metadata.get("namespace"), metadata.get("name", "unnamed")]
    return "-".join(str(part) for part in parts if part) + ".yaml"
