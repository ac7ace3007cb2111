"""The pod UID and container ID of a process, read from its ``/proc/PID/cgroup``.

Kubelet names each pod's cgroup after the pod UID and the runtime names each container's cgroup after the
container ID, so the path of a process's cgroup tells which pod and container it runs in. The layouts differ by
cgroup version, cgroup driver and runtime; SPIRE's k8s attestor matches them all with one pattern for the pod
UID and one for the 64-hex container ID (spire pkg/agent/plugin/workloadattestor/k8s). Examples::

    cgroup v1, cgroupfs driver, docker:   11:cpu:/kubepods/burstable/pod2c48913c-b29f-11e7-9350-020968147796/9bca...961
    cgroup v1, systemd driver, containerd: 1:name=systemd:/kubepods-besteffort-pod72f7f152_440c_66ac_9084_e0fc1d8a910c.slice:cri-containerd:b2a1...04a2
    cgroup v2, systemd driver, cri-o:      0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod..._....slice/crio-4549...d814.scope
    cgroup v2 seen from a cgroup namespace: 0::/../../kubepods-besteffort-pod..._....slice/cri-containerd-b2a1...04a2.scope

The systemd driver writes the UID with underscores (a dash separates slice names), so they are turned back
into dashes. A process outside any pod (the host, a plain docker container) has no pod UID: not an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["CgroupError", "PodContainer", "pod_container_of"]

# Preceded by a path or slice separator so that "kubepods" itself never matches; the UID's separators are '-'
# (cgroupfs) or '_' (systemd), or absent for static pods whose UID is a 32-hex config hash.
_POD_UID = re.compile(
    r"(?:^|[/\-.])pod"
    r"([0-9a-f]{8}[-_]?[0-9a-f]{4}[-_]?[0-9a-f]{4}[-_]?[0-9a-f]{4}[-_]?[0-9a-f]{12})"
    r"(?=$|[/.:])"
)
# The container ID ends the path: bare (cgroupfs), after "docker-", "crio-", "cri-containerd-" (systemd
# scopes) or after ":cri-containerd:" (containerd's systemd-driver notation on cgroup v1).
_CONTAINER_ID = re.compile(r"(?:^|[/\-:])([0-9a-f]{64})(?:\.scope)?$")
# CRI-O runs each container's monitor (conmon) in a scope named after the container; it is not the workload.
_NOT_A_CONTAINER = re.compile(r"conmon")


class CgroupError(ValueError):
    """A cgroup file that names more than one pod or container, so the process cannot be placed."""


@dataclass(frozen=True, slots=True)
class PodContainer:
    """Where a process runs: the pod UID (canonical, with dashes) and, when known, the container ID."""

    pod_uid: str
    container_id: str | None


def _canonical_pod_uid(raw: str) -> str:
    return raw.replace("_", "-")


def pod_container_of(cgroup_file: str) -> PodContainer | None:
    """Parse the text of ``/proc/PID/cgroup``; None when the process is not in a pod."""
    pod_uids: set[str] = set()
    container_ids: set[str] = set()
    for line in cgroup_file.splitlines():
        # hierarchy-ID:controller-list:cgroup-path -- the path itself may contain ':'.
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        path = parts[2]
        pod = _POD_UID.search(path)
        if pod is None:
            continue
        pod_uids.add(_canonical_pod_uid(pod.group(1)))
        last_segment = path.rsplit("/", 1)[-1]
        container = _CONTAINER_ID.search(path)
        if container is not None and not _NOT_A_CONTAINER.search(last_segment):
            container_ids.add(container.group(1))
    if not pod_uids:
        return None
    if len(pod_uids) > 1:
        raise CgroupError(f"the cgroups name several pods: {', '.join(sorted(pod_uids))}")
    if len(container_ids) > 1:
        raise CgroupError(
            f"the cgroups name several containers: {', '.join(sorted(container_ids))}"
        )
    return PodContainer(pod_uid=pod_uids.pop(), container_id=next(iter(container_ids), None))
