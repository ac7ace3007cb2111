"""Objects on the real control plane, made the way a cluster's controllers and kubelet would leave them.

Without kube-controller-manager nobody creates ServiceAccounts, and without a kubelet nobody asks for projected
tokens, so a test does both itself: :class:`Namespace` is a fresh namespace with helpers for its ServiceAccounts, pods
(bound to a Node object with ``spec.nodeName``), TokenRequests bound to a pod, and ConfigMaps. Pods are deleted with
``gracePeriodSeconds: 0``, since a graceful deletion leaves the pod (and its tokens) alive with no kubelet to finish
it. Requests are synchronous and short; a test may call them from its event loop.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from sigil_testing.controlplane import ControlPlane, ControlPlaneError

__all__ = ["Namespace", "add_node", "delete_node", "fresh_namespace", "named_namespace"]

_TOKEN_REQUEST_MIN_SECONDS = 600  # kube-apiserver refuses a shorter expirationSeconds


def _object(kind: str, name: str, **fields: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": kind, "metadata": {"name": name}, **fields}


def add_node(plane: ControlPlane, name: str | None = None) -> str:
    """Create a Node object (no kubelet behind it) and return its name."""
    name = name or f"node-{secrets.token_hex(4)}"
    plane.request("POST", "/api/v1/nodes", _object("Node", name))
    return name


def delete_node(plane: ControlPlane, name: str) -> None:
    """Delete a Node object, as a cluster operator removing the machine would."""
    plane.request("DELETE", f"/api/v1/nodes/{name}")


def fresh_namespace(plane: ControlPlane, prefix: str = "t") -> Namespace:
    """A namespace nobody else uses."""
    name = f"{prefix}-{secrets.token_hex(4)}"
    plane.request("POST", "/api/v1/namespaces", _object("Namespace", name))
    return Namespace(plane, name)


def named_namespace(plane: ControlPlane, name: str) -> Namespace:
    """Namespace ``name``, created unless it exists (for a test that needs that very name)."""
    try:
        plane.request("POST", "/api/v1/namespaces", _object("Namespace", name))
    except ControlPlaneError as err:
        if "AlreadyExists" not in str(err):
            raise
    return Namespace(plane, name)


@dataclass(frozen=True, slots=True)
class Namespace:
    """One namespace of ``plane``, with what a test puts into it."""

    plane: ControlPlane
    name: str

    def service_account(self, name: str) -> dict[str, Any]:
        """Create ServiceAccount ``name`` (or return the existing one)."""
        path = f"/api/v1/namespaces/{self.name}/serviceaccounts"
        try:
            return self.plane.request("POST", path, _object("ServiceAccount", name))
        except ControlPlaneError as err:
            if "AlreadyExists" not in str(err):
                raise
            return self.plane.request("GET", f"{path}/{name}")

    def pod(
        self,
        name: str,
        *,
        node: str | None,
        service_account: str = "app",
        labels: dict[str, str] | None = None,
        ports: dict[str, int] | None = None,
    ) -> dict[str, Any]:
        """Create a pod of ``service_account`` (created too, if need be) placed on ``node`` (None: unscheduled),
        its container naming ``ports`` (name: number).

        No kubelet runs it: it stays Pending.
        """
        self.service_account(service_account)
        container: dict[str, Any] = {"name": "app", "image": "registry.invalid/app:1"}
        if ports:
            container["ports"] = [{"name": k, "containerPort": v} for k, v in ports.items()]
        spec: dict[str, Any] = {"serviceAccountName": service_account, "containers": [container]}
        if node is not None:
            spec["nodeName"] = node
        body = _object("Pod", name, spec=spec)
        if labels:
            body["metadata"]["labels"] = labels
        return self.plane.request("POST", f"/api/v1/namespaces/{self.name}/pods", body)

    def bind_pod(self, name: str, node: str) -> None:
        """Schedule an unscheduled pod onto ``node``, as kube-scheduler does (the ``binding`` subresource)."""
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        }
        self.plane.request("POST", f"/api/v1/namespaces/{self.name}/pods/{name}/binding", body)

    def set_pod_phase(self, name: str, phase: str) -> None:
        """Report the pod's phase, as its kubelet would (the ``status`` subresource)."""
        pod = self.get_pod(name)
        pod["status"]["phase"] = phase
        self.plane.request("PUT", f"/api/v1/namespaces/{self.name}/pods/{name}/status", pod)

    def get_pod(self, name: str) -> dict[str, Any]:
        return self.plane.request("GET", f"/api/v1/namespaces/{self.name}/pods/{name}")

    def delete_pod(self, name: str) -> None:
        """Delete a pod at once (``gracePeriodSeconds: 0``): its bound tokens stop authenticating."""
        self.plane.request(
            "DELETE",
            f"/api/v1/namespaces/{self.name}/pods/{name}",
            {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0},
        )

    def token(
        self, pod: dict[str, Any], audience: str, *, seconds: int = _TOKEN_REQUEST_MIN_SECONDS
    ) -> str:
        """A projected ServiceAccount token bound to ``pod`` for ``audience``, as the kubelet asks for one."""
        meta = pod["metadata"]
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [audience],
                "expirationSeconds": seconds,
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": meta["name"],
                    "uid": meta["uid"],
                },
            },
        }
        account = pod["spec"]["serviceAccountName"]
        path = f"/api/v1/namespaces/{self.name}/serviceaccounts/{account}/token"
        token = self.plane.request("POST", path, body)["status"]["token"]
        assert isinstance(token, str)
        return token

    def config_map(self, name: str, data: dict[str, str] | None = None) -> dict[str, Any]:
        """Create ConfigMap ``name``, as the manifests would."""
        body = _object("ConfigMap", name, data=dict(data or {}))
        return self.plane.request("POST", f"/api/v1/namespaces/{self.name}/configmaps", body)

    def get_config_map(self, name: str) -> dict[str, Any]:
        return self.plane.request("GET", f"/api/v1/namespaces/{self.name}/configmaps/{name}")

    def put_config_map(self, config_map: dict[str, Any]) -> dict[str, Any]:
        """Replace a ConfigMap (its ``metadata.resourceVersion``, if any, is the precondition)."""
        name = config_map["metadata"]["name"]
        path = f"/api/v1/namespaces/{self.name}/configmaps/{name}"
        return self.plane.request("PUT", path, config_map)
