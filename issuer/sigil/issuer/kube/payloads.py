"""The Kubernetes JSON the issuer reads, as TypedDicts: the typed side of the boundary to an untyped wire.

Only the fields Sigil reads are declared, all optional (``total=False``) because the API omits empty ones; the keys
keep the wire's camelCase. See https://kubernetes.io/docs/reference/kubernetes-api/ for the full objects.
"""

from __future__ import annotations

from typing import Any, TypedDict

__all__ = [
    "ConfigMap",
    "Container",
    "ContainerPort",
    "ListMeta",
    "Node",
    "ObjectMeta",
    "Pod",
    "PodList",
    "PodSpec",
    "PodStatus",
    "Status",
    "TokenReviewStatus",
    "UserInfo",
    "WatchEvent",
]


class ObjectMeta(TypedDict, total=False):
    name: str
    namespace: str
    uid: str
    resourceVersion: str
    labels: dict[str, str]


ListMeta = TypedDict("ListMeta", {"resourceVersion": str, "continue": str}, total=False)


class ContainerPort(TypedDict, total=False):
    name: str
    containerPort: int


class Container(TypedDict, total=False):
    ports: list[ContainerPort]


class PodSpec(TypedDict, total=False):
    nodeName: str
    serviceAccountName: str
    containers: list[Container]


class PodStatus(TypedDict, total=False):
    phase: str
    podIP: str


class Pod(TypedDict, total=False):
    metadata: ObjectMeta
    spec: PodSpec
    status: PodStatus


class PodList(TypedDict, total=False):
    metadata: ListMeta
    items: list[Pod]


class ConfigMap(TypedDict, total=False):
    metadata: ObjectMeta
    data: dict[str, str]


class Node(TypedDict, total=False):
    metadata: ObjectMeta


class UserInfo(TypedDict, total=False):
    username: str
    uid: str
    groups: list[str]
    extra: dict[str, list[str]]


class TokenReviewStatus(TypedDict, total=False):
    authenticated: bool
    user: UserInfo
    audiences: list[str]
    error: str


class Status(TypedDict, total=False):
    status: str
    message: str
    reason: str
    code: int


# ``object`` is a Pod for ADDED/MODIFIED/DELETED/BOOKMARK and a Status for ERROR.
class WatchEvent(TypedDict):
    type: str
    object: dict[str, Any]
