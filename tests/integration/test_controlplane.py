"""The real control plane: the API server Sigil's Kubernetes tests talk to answers as a cluster's would."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sigil_testing.binaries import kubectl
from sigil_testing.controlplane import ControlPlane, Tools

pytestmark = pytest.mark.kube

_AUDIENCE = "sigil-test"
_TOOLS = Path(__file__).resolve().parents[2] / "tools"


@pytest.fixture
def pod(control_plane: ControlPlane, namespace: str) -> dict[str, Any]:
    """A pod of ServiceAccount ``workload``, placed on a Node object (no kubelet runs it: it stays Pending)."""
    node = f"node-{secrets.token_hex(4)}"
    control_plane.request("POST", "/api/v1/nodes", _object("Node", node))
    control_plane.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts",
        _object("ServiceAccount", "workload"),
    )
    spec = {
        "nodeName": node,
        "serviceAccountName": "workload",
        "containers": [{"name": "app", "image": "registry.invalid/app:1"}],
    }
    return control_plane.request(
        "POST", f"/api/v1/namespaces/{namespace}/pods", _object("Pod", "app", spec=spec)
    )


@pytest.fixture
def pod_token(control_plane: ControlPlane, pod: dict[str, Any]) -> str:
    """A TokenRequest bound to ``pod`` for ``_AUDIENCE``, as the kubelet asks for a projected volume."""
    meta = pod["metadata"]
    body = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {
            "audiences": [_AUDIENCE],
            "expirationSeconds": 600,
            "boundObjectRef": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": meta["name"],
                "uid": meta["uid"],
            },
        },
    }
    path = f"/api/v1/namespaces/{meta['namespace']}/serviceaccounts/workload/token"
    token = control_plane.request("POST", path, body)["status"]["token"]
    assert isinstance(token, str)
    return token


def _object(kind: str, name: str, **fields: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": kind, "metadata": {"name": name}, **fields}


def _review(control_plane: ControlPlane, token: str, audience: str) -> dict[str, Any]:
    body = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": token, "audiences": [audience]},
    }
    status = control_plane.request("POST", "/apis/authentication.k8s.io/v1/tokenreviews", body)[
        "status"
    ]
    assert isinstance(status, dict)
    return status


def test_version_is_the_release_built(control_plane: ControlPlane) -> None:
    """``/version`` names the release tools/kube builds, not the v0.0.0 of an unstamped build."""
    version = control_plane.request("GET", "/version")
    assert (version["gitVersion"], version["major"], version["minor"]) == ("v1.37.2", "1", "37")


def test_pod_bound_token_reviews_as_the_pod(
    control_plane: ControlPlane, pod: dict[str, Any], pod_token: str
) -> None:
    """A TokenReview for the token's audience authenticates the ServiceAccount with the pod and node as extras."""
    status = _review(control_plane, pod_token, _AUDIENCE)
    meta = pod["metadata"]
    assert status["authenticated"] is True
    assert status["audiences"] == [_AUDIENCE]
    user = status["user"]
    assert user["username"] == f"system:serviceaccount:{meta['namespace']}:workload"
    assert user["extra"]["authentication.kubernetes.io/pod-name"] == [meta["name"]]
    assert user["extra"]["authentication.kubernetes.io/pod-uid"] == [meta["uid"]]
    assert user["extra"]["authentication.kubernetes.io/node-name"] == [pod["spec"]["nodeName"]]


def test_review_for_another_audience_is_refused(
    control_plane: ControlPlane, pod_token: str
) -> None:
    """The same token reviewed for an audience it was not issued for does not authenticate."""
    status = _review(control_plane, pod_token, "someone-else")
    assert not status.get("authenticated")
    assert status["error"]


def test_kubectl_uses_the_kubeconfig(control_plane: ControlPlane, namespace: str) -> None:
    """``kubectl`` with the written kubeconfig lists namespaces, the test's own among them."""
    done = subprocess.run(  # noqa: S603 - kubectl with our own arguments
        [kubectl(), f"--kubeconfig={control_plane.kubeconfig}", "get", "namespaces", "-o", "name"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"namespace/{namespace}" in done.stdout.split()


def test_controlplane_command_up_then_down(kube_tools: Tools, tmp_path: Path) -> None:
    """``tools/controlplane up`` leaves a ready API server behind; ``up`` again says so; ``down`` stops both."""
    directory = tmp_path / "plane"
    # The cache the session's binaries are in (the suite clears SIGIL_* variables for each test).
    cache = str(kube_tools.kube_apiserver.parent)
    environment = {**os.environ, "PYTHON": sys.executable, "SIGIL_TOOLS_CACHE": cache}

    def run(action: str) -> str:
        done = subprocess.run(  # noqa: S603 - our own script
            [_TOOLS / "controlplane", action, directory],
            env=environment,
            capture_output=True,
            text=True,
            timeout=100,
            check=True,
        )
        return done.stdout

    assert f"KUBECONFIG={directory / 'kubeconfig'}" in run("up")
    try:
        plane = ControlPlane(directory)
        assert plane.running() == ["kube-apiserver", "etcd"]
        assert plane.request("GET", "/version")["gitVersion"]  # as the admin the kubeconfig names
        assert "already up" in run("up")
    finally:
        assert "stopped kube-apiserver, etcd" in run("down")
    assert ControlPlane(directory).running() == []
