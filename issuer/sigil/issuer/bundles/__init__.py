"""Trust bundles beyond the CA's own: what agents long-poll for, other trust domains, and the published ConfigMap.

- ``feed``: the own bundle, federated bundles and tainted authorities under one revision, for agents to wait on;
- ``federation``: polling other trust domains' SPIFFE bundle endpoints;
- ``configmap``: the bundle written to a Kubernetes ConfigMap for consumers without the Workload API.
"""

from __future__ import annotations

__all__: list[str] = []
