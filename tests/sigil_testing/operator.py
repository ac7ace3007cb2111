"""The pinned kubectl, run against the session's control plane, for tests that act as an operator would."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from sigil_testing.binaries import kubectl
from sigil_testing.controlplane import ControlPlane

__all__ = ["CRDS", "DEPLOY", "apply_crds", "run_kubectl"]

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
CRDS = DEPLOY / "crds"


def run_kubectl(
    plane: ControlPlane, *args: str, stdin: str | None = None, kubeconfig: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``kubectl ARGS`` as the admin (or as ``kubeconfig`` says); the caller checks the exit status."""
    return subprocess.run(  # noqa: S603 - the pinned kubectl with our own arguments
        [kubectl(), f"--kubeconfig={kubeconfig or plane.kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def apply_crds(plane: ControlPlane) -> None:
    """Apply the generated CRDs for real and wait until both are served."""
    files = sorted(CRDS.glob("*.authz.sigil.dev.yaml"))
    applied = run_kubectl(plane, "apply", *(f"-f={f}" for f in files))
    assert applied.returncode == 0, applied.stderr
    names = [yaml.safe_load(f.read_text())["metadata"]["name"] for f in files]
    ready = run_kubectl(
        plane, "wait", "--for=condition=Established", "--timeout=30s", *(f"crd/{n}" for n in names)
    )
    assert ready.returncode == 0, ready.stderr
