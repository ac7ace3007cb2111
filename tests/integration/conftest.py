"""Fixtures of the integration tests on top of the session's control plane (``control_plane`` and ``policy_crds`` in tests/conftest.py)."""

from __future__ import annotations

import pytest
from sigil_testing.controlplane import ControlPlane
from sigil_testing.realkube import fresh_namespace


@pytest.fixture
def namespace(control_plane: ControlPlane) -> str:
    """The name of a namespace of the test's own (a deleted one never finishes terminating without a controller)."""
    return fresh_namespace(control_plane).name
