"""Finding the pod UID and container ID in /proc/PID/cgroup for every layout kubelet and runtimes produce."""

from __future__ import annotations

import pytest

from sigil.node_agent.attestors.cgroup import CgroupError, PodContainer, pod_container_of

POD = "2c48913c-b29f-11e7-9350-020968147796"
POD_SYSTEMD = POD.replace("-", "_")
CID = "9bca8d63d5fa610783847915bcff0ecac1273e5b4bed3f6fa1b07350e0135961"

_V1_CONTROLLERS = [
    "cpuset",
    "cpu,cpuacct",
    "memory",
    "devices",
    "freezer",
    "net_cls,net_prio",
    "blkio",
    "pids",
]


def _v1(path: str) -> str:
    lines = [f"{12 - i}:{c}:{path}" for i, c in enumerate(_V1_CONTROLLERS)]
    lines.append(f"1:name=systemd:{path}")
    return "\n".join(lines) + "\n"


LAYOUTS = {
    "v1 cgroupfs docker": _v1(f"/kubepods/burstable/pod{POD}/{CID}"),
    "v1 cgroupfs besteffort": _v1(f"/kubepods/besteffort/pod{POD}/{CID}"),
    "v1 systemd docker": _v1(
        f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_SYSTEMD}.slice/docker-{CID}.scope"
    ),
    "v1 systemd containerd": _v1(
        f"/kubepods-besteffort-pod{POD_SYSTEMD}.slice:cri-containerd:{CID}"
    ),
    "v2 systemd containerd": "0::/kubepods.slice/kubepods-burstable.slice/"
    f"kubepods-burstable-pod{POD_SYSTEMD}.slice/cri-containerd-{CID}.scope\n",
    "v2 systemd cri-o": f"0::/kubepods.slice/kubepods-pod{POD_SYSTEMD}.slice/crio-{CID}.scope\n",
    "v2 systemd docker": f"0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{POD_SYSTEMD}.slice/docker-{CID}.scope\n",
    "v2 cgroupfs containerd": f"0::/kubepods/burstable/pod{POD}/{CID}\n",
    "v2 inside a cgroup namespace": f"0::/../../kubepods-besteffort-pod{POD_SYSTEMD}.slice/cri-containerd-{CID}.scope\n",
    "kind node inside docker": _v1(f"/docker/{'a' * 64}/kubepods/besteffort/pod{POD}/{CID}"),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_each_layout_gives_the_pod_and_the_container(layout: str) -> None:
    """The pod UID comes back with dashes and the container ID is the 64-hex of the container's cgroup."""
    assert pod_container_of(LAYOUTS[layout]) == PodContainer(pod_uid=POD, container_id=CID)


def test_a_static_pod_uid_without_dashes_is_kept_as_is() -> None:
    """Mirror pods' UIDs are a 32-hex hash, which the cgroup spells the same way."""
    uid = "7b1f6b2dd3f5d4e0a1b2c3d4e5f60718"
    assert pod_container_of(f"0::/kubepods/pod{uid}/{CID}\n") == PodContainer(uid, CID)


def test_the_pod_cgroup_itself_has_no_container() -> None:
    """A process in the pod's cgroup but in no container's gets the pod without a container ID."""
    assert pod_container_of(f"0::/kubepods/burstable/pod{POD}\n") == PodContainer(POD, None)


def test_cri_o_conmon_is_not_a_container() -> None:
    """CRI-O's monitor process lives in a scope named after the container but is not the workload."""
    text = f"0::/kubepods.slice/kubepods-pod{POD_SYSTEMD}.slice/crio-conmon-{CID}.scope\n"
    assert pod_container_of(text) == PodContainer(POD, None)


@pytest.mark.parametrize(
    "text",
    [
        "0::/user.slice/user-1000.slice/session-3.scope\n",
        f"0::/system.slice/docker-{CID}.scope\n",
        _v1(f"/docker/{CID}"),
        "0::/\n",
        "",
    ],
)
def test_a_process_outside_any_pod_has_none(text: str) -> None:
    """Host processes and plain containers are not in a pod: no answer, and no error."""
    assert pod_container_of(text) is None


def test_cgroups_naming_two_pods_are_refused() -> None:
    """A cgroup file that places the process in two pods cannot be trusted to name either."""
    other = "11111111-2222-3333-4444-555555555555"
    text = f"2:cpu:/kubepods/pod{POD}/{CID}\n1:memory:/kubepods/pod{other}/{CID}\n"
    with pytest.raises(CgroupError, match="several pods"):
        pod_container_of(text)
