"""Finding the pod UID and container ID in /proc/PID/cgroup for every layout kubelet and runtimes produce, and
refusing a pod named anywhere else (a user's own cgroup imitating a pod)."""

from __future__ import annotations

import pytest

from sigil.node_agent.attestation.attestors.cgroup import (
    CgroupError,
    PodContainer,
    pod_container_of,
)

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


NODE = "93529524695bb00d91c1f6dba692ea8d3550c3b94fb2463af7bc9ec82f992d26"
KIND_SYSTEMD = (
    "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/"
    f"kubelet-kubepods-besteffort-pod{POD_SYSTEMD}.slice/cri-containerd-{CID}.scope"
)

LAYOUTS = {
    "v1 cgroupfs docker": _v1(f"/kubepods/burstable/pod{POD}/{CID}"),
    "v1 cgroupfs besteffort": _v1(f"/kubepods/besteffort/pod{POD}/{CID}"),
    "v1 cgroupfs guaranteed": _v1(f"/kubepods/pod{POD}/{CID}"),
    "v1 systemd docker": _v1(
        f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_SYSTEMD}.slice/docker-{CID}.scope"
    ),
    "v1 systemd cri-o (minikube)": _v1(
        f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{POD_SYSTEMD}.slice/crio-{CID}.scope"
    ),
    "v1 systemd containerd, literal cgroupsPath": _v1(
        f"/kubepods-besteffort-pod{POD_SYSTEMD}.slice:cri-containerd:{CID}"
    ),
    "v2 systemd containerd": "0::/kubepods.slice/kubepods-burstable.slice/"
    f"kubepods-burstable-pod{POD_SYSTEMD}.slice/cri-containerd-{CID}.scope\n",
    "v2 systemd cri-o guaranteed": f"0::/kubepods.slice/kubepods-pod{POD_SYSTEMD}.slice/crio-{CID}.scope\n",
    "v2 systemd cri-o, crun's sub-cgroup": "0::/kubepods.slice/kubepods-besteffort.slice/"
    f"kubepods-besteffort-pod{POD_SYSTEMD}.slice/crio-{CID}.scope/container\n",
    "v2 systemd docker": f"0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{POD_SYSTEMD}.slice/docker-{CID}.scope\n",
    "v2 cgroupfs containerd": f"0::/kubepods/burstable/pod{POD}/{CID}\n",
    "v2 cgroupfs cri-o": f"0::/kubepods/besteffort/pod{POD}/crio-{CID}\n",
    "v2 inside a cgroup namespace, same QoS": f"0::/../../kubepods-besteffort-pod{POD_SYSTEMD}.slice/cri-containerd-{CID}.scope\n",
    "v2 inside a cgroup namespace, other QoS": f"0::/../../../kubepods-burstable.slice/kubepods-burstable-pod{POD_SYSTEMD}.slice/cri-containerd-{CID}.scope\n",
    "v2 cgroupfs inside a cgroup namespace": f"0::/../../../burstable/pod{POD}/{CID}\n",
    "Docker Desktop (cgroup root kubepods)": _v1(f"/kubepods/kubepods/besteffort/pod{POD}/{CID}"),
    "kind v1 node inside docker": _v1(f"/docker/{NODE}/kubepods/besteffort/pod{POD}/{CID}")
    + f"0::/docker/{NODE}/system.slice/containerd.service\n",
    "kind v1 node, cgroup root kubelet": _v1(
        f"/docker/{NODE}/kubelet/kubepods/besteffort/pod{POD}/{CID}"
    ),
    "kind v2 node, seen inside the node": f"0::{KIND_SYSTEMD}\n",
    "kind v2 node, seen from the host": f"0::/system.slice/docker-{NODE}.scope{KIND_SYSTEMD}\n",
    "kind v2 node on the host, cgroupfs": f"0::/system.slice/docker-{NODE}.scope/kubepods/besteffort/pod{POD}/{CID}\n",
    "kind on podman": f"0::/machine.slice/libpod-{NODE}.scope{KIND_SYSTEMD}\n",
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


def test_cgroups_naming_a_pod_and_a_user_cgroup_in_v1_are_refused() -> None:
    """A v1 process whose systemd hierarchy is a user's own cgroup named like a pod is refused, even if the
    other lines are genuine."""
    spoofed = f"/user.slice/user-1000.slice/user@1000.service/kubepods/besteffort/pod{POD}/{CID}"
    text = f"8:pids:/kubepods/besteffort/pod{POD}/{CID}\n1:name=systemd:{spoofed}\n"
    with pytest.raises(CgroupError, match="outside kubelet's pod hierarchy"):
        pod_container_of(text)


USER = "/user.slice/user-1000.slice/user@1000.service"
SPOOFED = {
    "systemd user unit named like a pod slice": f"{USER}/app.slice/kubepods-besteffort-pod{POD_SYSTEMD}.slice/cri-containerd-{CID}.scope",
    "kubepods tree inside a user's delegated subtree": f"{USER}/kubepods/besteffort/pod{POD}/{CID}",
    "systemd kubepods slices inside a user's subtree": f"{USER}/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{POD_SYSTEMD}.slice/cri-containerd-{CID}.scope",
    "rootless docker running a kind node": f"{USER}/user.slice/docker-{NODE}.scope/kubepods/besteffort/pod{POD}/{CID}",
    "a login session": f"/user.slice/user-1000.slice/session-3.scope/pod{POD}/{CID}",
    "a system service's delegated subtree": f"/system.slice/podman.service/kubepods/pod{POD}/{CID}",
    "a pod segment not under kubepods": f"/something/pod{POD}/{CID}",
    "a pod segment at the root": f"/pod{POD}/{CID}",
    "a pod segment below an unknown level": f"/kubepods/besteffort/extra/pod{POD}/{CID}",
    "an unknown QoS class": f"/kubepods/platinum/pod{POD}/{CID}",
    "a systemd pod slice at the root without its parents": f"/kubepods-besteffort-pod{POD_SYSTEMD}.slice/cri-containerd-{CID}.scope",
    "a systemd pod slice under the wrong parent": f"/kubepods.slice/kubepods-burstable.slice/kubepods-besteffort-pod{POD_SYSTEMD}.slice/crio-{CID}.scope",
    "a systemd pod slice with made-up levels": f"/kubepods.slice/kubepods-evil.slice/kubepods-evil-pod{POD_SYSTEMD}.slice/crio-{CID}.scope",
    "a cgroupfs pod under a user slice seen from a cgroup namespace": f"/../../../user.slice/kubepods/besteffort/pod{POD}/{CID}",
    "'..' inside the hierarchy": f"/kubepods/besteffort/../pod{POD}/{CID}",
    "a pod nested in another pod": f"/kubepods/besteffort/pod{POD}/{CID}/kubepods/besteffort/pod11111111-2222-3333-4444-555555555555/{CID}",
    "a pod UID inside another name": f"/kubepods/besteffort/xpod{POD}/{CID}",
}


@pytest.mark.parametrize("spoof", sorted(SPOOFED))
def test_a_pod_named_outside_kubelets_hierarchy_is_refused(spoof: str) -> None:
    """A cgroup that names a pod anywhere but where kubelet puts pods is refused, in v1 and v2 alike."""
    with pytest.raises(CgroupError):
        pod_container_of(f"0::{SPOOFED[spoof]}\n")
    with pytest.raises(CgroupError):
        pod_container_of(_v1(SPOOFED[spoof]))


def test_a_hierarchy_listed_twice_is_refused() -> None:
    """A second line for one hierarchy is what a cgroup name forging a line would produce: refused."""
    text = f"0::/user.slice/user-1000.slice/x\n0::/kubepods/besteffort/pod{POD}/{CID}\n"
    with pytest.raises(CgroupError, match="hierarchy 0 twice"):
        pod_container_of(text)
