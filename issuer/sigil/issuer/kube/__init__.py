"""The issuer's view of Kubernetes: who a projected token proves the caller to be, and which pods run where.

``api`` is the one door to the API server (typed payloads in, ``KubernetesUnavailableError`` out), with its list
and watch streams in ``listwatch``; ``tokenreview`` authenticates node agents and agentless workloads; ``podcache``
watches pods so that node authorization never costs a request to the API server.
"""

from __future__ import annotations

from sigil.issuer.kube.api import KubeApi
from sigil.issuer.kube.identity import (
    DEFAULT_WORKLOAD_ID_TEMPLATE,
    KubeIdentity,
    ServiceAccountRef,
    WorkloadIdTemplate,
)
from sigil.issuer.kube.nodeauth import authorize_pod_for_node
from sigil.issuer.kube.podcache import CachedPod, PodCache
from sigil.issuer.kube.tokenreview import (
    DEFAULT_AUDIENCE,
    TokenReviewAuthenticator,
    TokenReviewMetrics,
)

__all__ = [
    "DEFAULT_AUDIENCE",
    "DEFAULT_WORKLOAD_ID_TEMPLATE",
    "CachedPod",
    "KubeApi",
    "KubeIdentity",
    "PodCache",
    "ServiceAccountRef",
    "TokenReviewAuthenticator",
    "TokenReviewMetrics",
    "WorkloadIdTemplate",
    "authorize_pod_for_node",
]
