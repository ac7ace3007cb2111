"""The pod UID and container ID of a process, read from its ``/proc/PID/cgroup``, only where kubelet puts pods.

Kubelet names each pod's cgroup after the pod UID and the runtime names each container's cgroup after the
container ID, so the path of a process's cgroup tells which pod and container it runs in -- but only if the path
is one kubelet made. Anyone allowed to create cgroups somewhere (a systemd user unit, rootless podman or docker,
any delegated subtree) can name one ``pod<victim-uid>``; a parser that looks for that name anywhere in the path
hands the victim's identity to whoever made it. So the pod segment is accepted only at the place kubelet's
cgroup manager gives it (``pkg/kubelet/cm/cgroup_manager_linux.go``, ``qos_container_manager_linux.go``):

- cgroupfs driver: ``[/ROOT]/kubepods[/QOS]/pod<uid>/<container>``, ``ROOT`` the optional ``--cgroup-root``
  (``kubelet`` in kind, ``kubepods`` in Docker Desktop), ``QOS`` ``burstable`` or ``besteffort`` (guaranteed
  pods sit directly under ``kubepods``);
- systemd driver: the same names joined with ``-`` into nested slices, the UID's dashes turned into underscores
  (``ToSystemd``): ``/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<u_i_d>.slice/`` then
  ``cri-containerd-<id>.scope``, ``crio-<id>.scope`` or ``docker-<id>.scope``;
- before that, only the cgroup of a kind node's container as the host names it (``/docker/<id>``,
  ``/system.slice/docker-<id>.scope``, ``/machine.slice/libpod-<id>.scope``), never anything under a user slice;
- or, for a process outside the agent's cgroup namespace, a run of ``..`` followed by the *tail* of that chain
  (``/../../kubepods-besteffort-pod<u_i_d>.slice/...``, ``/../../../burstable/pod<uid>/<id>``): the ``..``
  climb from the agent's own cgroup to an ancestor of it, and the ancestors of a pod's cgroup are kubelet's.

Anything else that names a pod -- a pod segment under a user slice, one not directly below a QoS or ``kubepods``
level, two pod segments, ``..`` in the middle -- is refused as a :class:`CgroupError`, never read as "not in a
pod", so the caller is told no instead of silently losing its ``k8s`` selectors. This is stricter than SPIRE's k8s
attestor, which since Kubernetes 1.21 matches ``pod<uid>`` followed by a container ID anywhere in the path
(``pkg/agent/plugin/workloadattestor/k8s/k8s_posix.go``). The trust that remains: whoever can create cgroups at
or above kubelet's pod hierarchy (root on the node, a pod with the host's cgroupfs mounted writable) can place a
process in any pod, as they could with every node-local attestor.

CRI-O runs each container's monitor (``conmon``) in a scope named after the container; it is not the workload and
gets the pod without a container ID. A process outside any pod (the host, a plain docker container) has no pod UID:
not an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["CgroupError", "PodContainer", "pod_container_of"]

_UID = r"[0-9a-f]{8}(?P<sep>[-_])[0-9a-f]{4}(?P=sep)[0-9a-f]{4}(?P=sep)[0-9a-f]{4}(?P=sep)[0-9a-f]{12}|[0-9a-f]{32}"
_CID = r"[0-9a-f]{64}"
# Any mention of a pod UID in a path segment, wherever it is: what must then sit exactly where kubelet puts it.
_MENTION = re.compile(
    r"pod[0-9a-f]{8}[-_]?[0-9a-f]{4}[-_]?[0-9a-f]{4}[-_]?[0-9a-f]{4}[-_]?[0-9a-f]{12}"
)
_CGROUPFS_POD = re.compile(rf"pod(?P<uid>{_UID})")
# ``NAMES-pod<uid>.slice``, optionally followed by containerd's ``:cri-containerd:<id>`` (a cgroupsPath that runc's
# cgroupfs manager created literally, at the hierarchy's root, when kubelet and containerd disagreed on the driver).
_SYSTEMD_POD = re.compile(
    rf"(?P<names>[a-z]+(?:-[a-z]+)*)-pod(?P<uid>{_UID})\.slice(?::cri-containerd:(?P<cid>{_CID}))?"
)
_CONTAINER = re.compile(rf"(?:(?:cri-containerd|crio|docker)-)?(?P<cid>{_CID})(?:\.scope)?")
# CRI-O's monitor (conmon) scope, named after the container it watches.
_CONMON = re.compile(rf"crio-conmon-{_CID}(?:\.scope)?")
# kubelet's own levels: an optional cgroup root, ``kubepods``, an optional QoS class.
_ROOTS = ((), ("kubelet",), ("kubepods",))
_QOS = ((), ("burstable",), ("besteffort",))
_CHAINS = tuple((*root, "kubepods", *qos) for root in _ROOTS for qos in _QOS)
# The cgroup of a kind node's container, as the host (or a node without its own cgroup namespace) names it.
_NODE_PREFIXES = (
    re.compile(rf"/docker/{_CID}"),
    re.compile(rf"/system\.slice/docker-{_CID}\.scope"),
    re.compile(rf"/machine\.slice/libpod-{_CID}\.scope"),
)


class CgroupError(ValueError):
    """A cgroup file that names a pod somewhere kubelet does not put pods, or several pods or containers."""


@dataclass(frozen=True, slots=True)
class PodContainer:
    """Where a process runs: the pod UID (canonical, with dashes) and, when known, the container ID."""

    pod_uid: str
    container_id: str | None


def _systemd_slices(chain: tuple[str, ...]) -> tuple[str, ...]:
    """``("kubepods", "besteffort")`` -> ``("kubepods.slice", "kubepods-besteffort.slice")`` (systemd's nesting)."""
    return tuple("-".join(chain[: n + 1]) + ".slice" for n in range(len(chain)))


def _ancestors_fit(above: list[str], expected: tuple[str, ...], *, relative: bool) -> bool:
    """Whether the segments above the pod are kubelet's chain (below a kind node's cgroup at most).

    A path seen from another cgroup namespace starts at an ancestor of the agent's own cgroup, so only the tail of
    the chain shows; an absolute path must show all of it, from the root or a kind node's container.
    """
    if relative:
        return (
            len(above) <= len(expected) and tuple(above) == expected[len(expected) - len(above) :]
        )
    if len(above) < len(expected) or tuple(above[len(above) - len(expected) :]) != expected:
        return False
    prefix = "".join(f"/{s}" for s in above[: len(above) - len(expected)])
    return prefix == "" or any(p.fullmatch(prefix) for p in _NODE_PREFIXES)


def _pod_in(path: str) -> PodContainer | None:
    """The pod and container one cgroup path places the process in; None when it names no pod."""
    segments = [s for s in path.split("/") if s]
    mentions = [i for i, s in enumerate(segments) if _MENTION.search(s)]
    if not mentions:
        return None
    if len(mentions) > 1:
        raise CgroupError(f"the cgroup path {path!r} names several pods")
    climbs = 0
    while climbs < len(segments) and segments[climbs] == "..":
        climbs += 1
    at = mentions[0]
    above, below = segments[climbs:at], segments[at + 1 :]
    if ".." in above or ".." in below:
        raise CgroupError(f"the cgroup path {path!r} climbs ('..') inside kubelet's pod hierarchy")
    relative = climbs > 0
    segment = segments[at]
    uid = ""
    container_id: str | None = None
    fits = False
    if (cgroupfs := _CGROUPFS_POD.fullmatch(segment)) is not None:
        uid = cgroupfs["uid"]
        fits = any(_ancestors_fit(above, chain, relative=relative) for chain in _CHAINS)
    elif (systemd := _SYSTEMD_POD.fullmatch(segment)) is not None:
        uid = systemd["uid"]
        chain = tuple(systemd["names"].split("-"))
        if chain in _CHAINS:
            if systemd["cid"] is not None:
                # The literal cgroupsPath sits at a hierarchy's root (or a kind node's), never below a chain.
                fits = not below and _ancestors_fit(above, (), relative=relative)
                container_id = systemd["cid"]
            else:
                fits = _ancestors_fit(above, _systemd_slices(chain), relative=relative)
    if not fits:
        raise CgroupError(f"the cgroup path {path!r} names a pod outside kubelet's pod hierarchy")
    if below and not _CONMON.fullmatch(below[0]):
        container = _CONTAINER.fullmatch(below[0])
        container_id = container["cid"] if container is not None else None
    return PodContainer(pod_uid=uid.replace("_", "-"), container_id=container_id)


def pod_container_of(cgroup_file: str) -> PodContainer | None:
    """Parse the text of ``/proc/PID/cgroup``; None when the process is not in a pod, CgroupError when unsure."""
    pod_uids: set[str] = set()
    container_ids: set[str] = set()
    hierarchies: set[str] = set()
    for line in cgroup_file.splitlines():
        # hierarchy-ID:controller-list:cgroup-path -- the path itself may contain ':'.
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        # Each hierarchy is listed once. Kernels since 4.14 refuse '\n' in a cgroup's name, which would let a
        # name forge a second line; a repeated hierarchy is what such a forgery looks like on older ones.
        if parts[0] in hierarchies:
            raise CgroupError(f"the cgroup file lists hierarchy {parts[0]} twice")
        hierarchies.add(parts[0])
        found = _pod_in(parts[2])
        if found is None:
            continue
        pod_uids.add(found.pod_uid)
        if found.container_id is not None:
            container_ids.add(found.container_id)
    if not pod_uids:
        return None
    if len(pod_uids) > 1:
        raise CgroupError(f"the cgroups name several pods: {', '.join(sorted(pod_uids))}")
    if len(container_ids) > 1:
        raise CgroupError(
            f"the cgroups name several containers: {', '.join(sorted(container_ids))}"
        )
    return PodContainer(pod_uid=pod_uids.pop(), container_id=next(iter(container_ids), None))
