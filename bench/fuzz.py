"""Fuzzing figures: executions per target and crashes, from the Hypothesis fuzz tests run with a larger budget.

Runs ``tests/fuzz`` (SPIFFE IDs and trust domains, CSRs, JWT-SVIDs, SPIFFE bundles, policy documents and YAML,
the issuer's agent and admin APIs over their real listeners, schemathesis from the OpenAPI document, and the
agent socket's Workload API, SDS and policy service) with ``SIGIL_FUZZ_EXAMPLES`` inputs per test (2,000; 20 with
``--quick``), and reads Hypothesis's own statistics: test cases run (passing and failing) and seconds, per target.
A failing case is a crash, an unclear refusal, a 500 or a changed state: the test says which. Also counts the
bugs fuzzing found that are fixed on this history (commits to product code whose message says "found by
fuzzing"; each keeps its input as a regression example or a file under ``tests/fuzz/corpus/``). Writes ``bench/results/fuzz.json``; exits 1
when this run found a crash.

    python bench/fuzz.py [--quick] [--examples N]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _results import RESULTS, merge_results

ROOT = Path(__file__).resolve().parent.parent

#: Which target each fuzz test exercises, by the start of its pytest ID.
TARGETS = {
    "test_identity_parsers.py::test_spiffe_id": "spiffe_id",
    "test_identity_parsers.py::test_trust_domain": "trust_domain",
    "test_identity_parsers.py::test_a_mangled_csr": "csr",
    "test_identity_parsers.py::test_arbitrary_bytes": "csr",
    "test_tokens_and_bundles.py::test_signed_tokens": "jwt_svid",
    "test_tokens_and_bundles.py::test_any_header": "jwt_svid",
    "test_tokens_and_bundles.py::test_a_token": "jwt_svid",
    "test_tokens_and_bundles.py::test_any_text": "jwt_svid",
    "test_tokens_and_bundles.py::test_a_damaged_bundle": "spiffe_bundle",
    "test_tokens_and_bundles.py::test_damaged_bundle": "spiffe_bundle",
    "test_tokens_and_bundles.py::test_bytes_are": "spiffe_bundle",
    "test_policy_documents.py": "policy_documents",
    "test_issuer_http.py::test_agent": "issuer_agent_api",
    "test_issuer_http.py::test_raw": "issuer_agent_and_admin_raw_bodies",
    "test_issuer_http.py::test_admin": "issuer_admin_api",
    "test_schemathesis.py": "openapi_schemathesis",
    "test_workload_api.py": "agent_socket_grpc",
}

_PRODUCT = ("kit", "ca", "issuer", "enforcer", "node-agent")
_TEST = re.compile(r"^tests/fuzz/(\S+)::(\S+):$")
_COUNTS = re.compile(r"- (\d+) passing, (\d+) failing, and (\d+) invalid test cases")
_PHASE = re.compile(r"- during \w+ phase \(([\d.]+) seconds\)")


def _target(test: str) -> str:
    for prefix, target in TARGETS.items():
        if test.startswith(prefix):
            return target
    return "other"


def _statistics(output: str) -> dict[str, dict[str, float]]:
    """Test cases and seconds per target, from ``--hypothesis-show-statistics``."""
    targets: dict[str, dict[str, float]] = {}
    current: dict[str, float] | None = None
    for line in output.splitlines():
        line = line.strip()
        if match := _TEST.match(line):
            name = _target(f"{match.group(1)}::{match.group(2)}")
            current = targets.setdefault(name, {"executions": 0, "failing": 0, "seconds": 0.0})
        elif current is not None and (match := _PHASE.search(line)):
            current["seconds"] += float(match.group(1))
        elif current is not None and (match := _COUNTS.search(line)):
            current["executions"] += int(match.group(1)) + int(match.group(2))
            current["failing"] += int(match.group(2))
    for figures in targets.values():
        figures["seconds"] = round(figures["seconds"], 2)
        figures["per_second"] = (
            round(figures["executions"] / figures["seconds"], 1) if figures["seconds"] else 0.0
        )
    # The same-run baseline: the bare SPIFFE ID parser. How many times its cost one input of each target takes
    # (a request through TLS, HTTP and the datastore costs hundreds of parses) shows where fuzzing time goes.
    baseline = targets.get("spiffe_id", {}).get("per_second", 0.0)
    for figures in targets.values():
        figures["cost_over_spiffe_id_parse"] = (
            round(baseline / figures["per_second"], 1)
            if baseline and figures["per_second"]
            else None
        )
    return targets


def _fixed() -> list[str]:
    """Subjects of the commits that fixed a bug fuzzing found (empty outside a git checkout)."""
    # Only commits that changed product code: the fixes, not this script or the tests that say so.
    command = ["git", "log", "--format=%s", "--grep=found by fuzzing", "--", *_PRODUCT]
    try:
        log = subprocess.run(  # noqa: S603 -- git on our own checkout
            command,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return [line for line in log.stdout.splitlines() if line]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="20 inputs per test (about a minute)")
    parser.add_argument(
        "--examples", type=int, help="inputs per test (default 2000; 20 with --quick)"
    )
    args = parser.parse_args()
    examples = args.examples or (20 if args.quick else 2000)
    environment = dict(os.environ, SIGIL_FUZZ_EXAMPLES=str(examples))
    started = time.perf_counter()
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests/fuzz",
            "-q",
            "-p",
            "no:cacheprovider",
            "--hypothesis-show-statistics",
            "-o",
            "timeout=7200",
        ],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    targets = _statistics(run.stdout)
    fixed = _fixed()
    crashes = int(sum(t["failing"] for t in targets.values()))
    figures: dict[str, Any] = {
        "examples_per_test": examples,
        "seconds": round(elapsed, 1),
        "targets": targets,
        "executions_total": int(sum(t["executions"] for t in targets.values())),
        "crashes_found_this_run": crashes,
        "tests_failed": run.returncode != 0,
        "bugs_found_and_fixed": len(fixed),
        "fixed": fixed,
        "quick": args.quick,
    }
    merge_results(RESULTS / "fuzz.json", figures)
    for name, target in sorted(targets.items()):
        print(
            f"{name:>36}: {target['executions']:>7} executions, {target['per_second']:>7} /s, "
            f"{target['failing']} failing"
        )
    print(f"{'total':>36}: {figures['executions_total']} executions in {figures['seconds']} s")
    print(f"{'crashes this run':>36}: {crashes}")
    print(f"{'bugs found by fuzzing, fixed':>36}: {len(fixed)}")
    if run.returncode != 0:
        print(run.stdout[-4000:])
    return 0 if run.returncode == 0 and crashes == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
