"""A real Kubernetes control plane without a cluster: etcd and kube-apiserver on loopback, for tests and by hand.

The stand-in in :mod:`sigil_testing.kube` imitates the API server; this runs the real one, built from source by
``tools/build`` (``make tools``), so TokenRequest, TokenReview, RBAC and admission are upstream's own. There is no
kube-controller-manager, scheduler or kubelet, which shapes what a test can expect (no ``default`` ServiceAccount,
namespaces never finish deleting, pods stay Pending; the README's "A Kubernetes control plane without a
cluster" says more).

Everything lives in one directory: keys and certificates, the admin token file, etcd's data, ``*.log``, ``*.pid``
and an admin ``kubeconfig``. The pid files let another process stop what this one started
(``tools/controlplane down DIR``). The serving CA and certificate come from
:mod:`sigil_testing.certificates`, which pulls in no part of the issuer.
"""

from __future__ import annotations

import argparse
import json
import secrets
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import yaml

from sigil_testing.controlplane_setup import (
    ISSUER,
    apiserver_flags,
    etcd_flags,
    write_credentials,
    write_kubeconfig,
)
from sigil_testing.network import free_ports
from sigil_testing.supervisor import Supervisor

__all__ = ["ISSUER", "ControlPlane", "ControlPlaneError", "Tools", "build_tools"]

_BUILD = Path(__file__).resolve().parents[2] / "tools" / "build"
# Stopped in this order: the API server first, so that it never loses etcd while it still serves.
_PROCESSES = ("kube-apiserver", "etcd")


class ControlPlaneError(Exception):
    """The control plane could not be built, started or stopped; the message says which and quotes the log."""


@dataclass(frozen=True, slots=True)
class Tools:
    """Paths of the binaries the control plane runs."""

    kube_apiserver: Path
    etcd: Path


def build_tools() -> Tools:
    """Build kube-apiserver and etcd with ``tools/build`` (at once when cached); its progress goes to stderr."""
    try:
        done = subprocess.run(  # noqa: S603 - our own script, fixed arguments
            [_BUILD, "kube-apiserver", "etcd"], stdout=subprocess.PIPE, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError) as err:
        raise ControlPlaneError(f"{_BUILD} failed ({err}); its messages are above") from err
    kube_apiserver, etcd = (Path(line) for line in done.stdout.split())
    return Tools(kube_apiserver=kube_apiserver, etcd=etcd)


class ControlPlane:
    """etcd and kube-apiserver serving from ``directory``; :meth:`start` them, :meth:`stop` them.

    ``detach`` starts them in a session of their own, so that they outlive this process and ignore the terminal's
    Ctrl-C (for ``tools/controlplane up``); a test run leaves them in its own process group instead.
    """

    def __init__(
        self,
        directory: Path,
        *,
        tools: Tools | None = None,
        detach: bool = False,
        ready_timeout: float = 120.0,
    ) -> None:
        self.directory = directory.resolve()
        self._tools = tools
        self._ready_timeout = ready_timeout
        self._processes = Supervisor(self.directory, detach=detach)

    @property
    def kubeconfig(self) -> Path:
        """An admin kubeconfig (``system:masters``), written once the API server is ready."""
        return self.directory / "kubeconfig"

    @property
    def ca_file(self) -> Path:
        """The CA that signed the API server's serving certificate."""
        return self.directory / "ca.crt"

    @property
    def url(self) -> str:
        return str(self._kubeconfig_value("cluster", "server"))

    @property
    def admin_token(self) -> str:
        return str(self._kubeconfig_value("user", "token"))

    def _kubeconfig_value(self, section: str, key: str) -> object:
        try:
            config = yaml.safe_load(self.kubeconfig.read_text())
            return config[f"{section}s"][0][section][key]
        except (OSError, yaml.YAMLError, LookupError, TypeError) as err:
            raise ControlPlaneError(
                f"no usable {self.kubeconfig}: is the control plane up?"
            ) from err

    def request(
        self, method: str, path: str, body: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """One JSON request to the API server as the admin; an error reply raises with its Status message."""
        data = json.dumps(body).encode() if body is not None else None
        context = ssl.create_default_context(cafile=self.ca_file)
        try:
            reply = _https(self.url + path, self.admin_token, context, method=method, data=data)
            return cast(dict[str, Any], json.loads(reply))
        except urllib.error.HTTPError as err:
            message = err.read().decode(errors="replace")
            raise ControlPlaneError(f"{method} {path}: HTTP {err.code}: {message}") from err
        except OSError as err:
            raise ControlPlaneError(f"{method} {path}: {err}") from err

    @property
    def etcd_url(self) -> str:
        """etcd's client URL (plain HTTP on loopback), for its JSON gateway; known to the instance that started it."""
        for flag in self._processes.argv.get("etcd", []):
            if flag.startswith("--listen-client-urls="):
                return flag.partition("=")[2]
        raise ControlPlaneError(f"{self.directory}: etcd was not started by this instance")

    def compact_etcd(self) -> int:
        """Compact etcd's history up to its current revision, as kube-apiserver does every five minutes.

        Through etcd's gRPC gateway (``/v3/kv/range`` for the revision, ``/v3/kv/compaction``), so no etcdctl is
        needed. Returns the revision compacted to.
        """
        # The key is base64 for "/"; the range answer's header carries the store's current revision.
        head = json.loads(_post(f"{self.etcd_url}/v3/kv/range", {"key": "Lw==", "limit": 1}))
        revision = int(head["header"]["revision"])
        _post(f"{self.etcd_url}/v3/kv/compaction", {"revision": revision, "physical": True})
        return revision

    def stop_apiserver(self, *, timeout: float = 15.0) -> None:
        """Stop kube-apiserver only: etcd keeps its data, and the port stays this instance's to start again.

        SIGTERM, then SIGKILL after ``timeout``: with a watch open it waits out the whole timeout, which a test that
        only wants it gone shortens.
        """
        self._processes.stop("kube-apiserver", timeout=timeout)

    def start_apiserver(self) -> None:
        """Start kube-apiserver again, with the flags and port it had, and return once ``/readyz`` says ok.

        Its watch cache starts empty, so a watch from a resourceVersion older than the restart answers 410 Gone.
        """
        argv = self._processes.argv.get("kube-apiserver")
        if argv is None:
            raise ControlPlaneError(
                f"{self.directory}: kube-apiserver was not started by this instance"
            )
        self._processes.spawn("kube-apiserver", argv)
        self._wait_ready(self.url, self.admin_token)

    def running(self) -> list[str]:
        """The names of this directory's processes that are alive."""
        return [name for name in _PROCESSES if self._processes.pid(name) is not None]

    def start(self) -> None:
        """Start etcd and kube-apiserver afresh (etcd's data is wiped) and return once ``/readyz`` says ok."""
        if alive := self.running():
            raise ControlPlaneError(f"{self.directory} is already up ({', '.join(alive)} running)")
        tools = self._tools or build_tools()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.kubeconfig.unlink(missing_ok=True)
        token = secrets.token_urlsafe(32)
        write_credentials(self.directory, token)
        etcd_client, etcd_peer, secure = free_ports(3)
        try:
            self._processes.spawn(
                "etcd", [str(tools.etcd), *etcd_flags(self.directory, etcd_client, etcd_peer)]
            )
            self._processes.spawn(
                "kube-apiserver",
                [str(tools.kube_apiserver), *apiserver_flags(self.directory, etcd_client, secure)],
            )
            url = f"https://127.0.0.1:{secure}"
            self._wait_ready(url, token)
        except BaseException:
            self.stop()
            raise
        write_kubeconfig(self.directory, url, token)

    def stop(self, *, timeout: float = 15.0) -> None:
        """SIGTERM each process, SIGKILL it after ``timeout`` seconds; remove the pid files and kubeconfig."""
        for name in _PROCESSES:
            self._processes.stop(name, timeout=timeout, forget=True)
        self.kubeconfig.unlink(missing_ok=True)

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _wait_ready(self, url: str, token: str) -> None:
        context = ssl.create_default_context(cafile=self.ca_file)
        deadline = time.monotonic() + self._ready_timeout
        while True:
            if (gone := self._processes.exited()) is not None:
                name, code = gone
                raise ControlPlaneError(
                    f"{name} exited with {code}:\n{self._processes.log_tail(name)}"
                )
            try:
                if _https(f"{url}/readyz", token, context, timeout=5) == b"ok":
                    return
            except OSError:
                pass  # not listening yet, or /readyz answered 500 with the checks still failing
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"kube-apiserver not ready after {self._ready_timeout:.0f} s:\n"
                    f"{self._processes.log_tail('kube-apiserver')}"
                )
            time.sleep(0.1)


def _https(
    url: str,
    token: str,
    context: ssl.SSLContext,
    *,
    method: str = "GET",
    data: bytes | None = None,
    timeout: float = 30,
) -> bytes:
    """The body of one request to the API server; an error reply raises ``urllib.error.HTTPError``."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    # The URL is always https://127.0.0.1:PORT/..., built here, never a caller's scheme.
    request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310
    # An empty ProxyHandler: an https_proxy in the environment must not take loopback traffic off the host.
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )
    with opener.open(request, timeout=timeout) as reply:
        body: bytes = reply.read()
        return body


def _post(url: str, body: Mapping[str, Any]) -> bytes:
    """POST JSON to etcd's gateway on loopback (plain HTTP, no credentials: the test's own etcd)."""
    request = urllib.request.Request(  # noqa: S310 - http://127.0.0.1:PORT from our own flags
        url, data=json.dumps(body).encode(), method="POST"
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=30) as reply:
            answer: bytes = reply.read()
            return answer
    except OSError as err:
        raise ControlPlaneError(f"POST {url}: {err}") from err


def main(argv: list[str] | None = None) -> int:
    """``tools/controlplane up DIR`` / ``down DIR``: the same control plane, for a person at a shell."""
    parser = argparse.ArgumentParser(prog="tools/controlplane", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("directory", type=Path)
    args = parser.parse_args(argv)
    plane = ControlPlane(args.directory, detach=True)
    try:
        if args.action == "down":
            was = plane.running()
            plane.stop()
            print(f"stopped {', '.join(was)}" if was else f"{plane.directory} was not up")
            return 0
        if alive := plane.running():
            print(
                f"{plane.directory} is already up ({', '.join(alive)}); KUBECONFIG={plane.kubeconfig}"
            )
            return 0
        started = time.monotonic()
        plane.start()
    except ControlPlaneError as err:
        print(f"tools/controlplane: {err}", file=sys.stderr)
        return 1
    print(
        f"up in {time.monotonic() - started:.1f} s at {plane.url}; logs in {plane.directory}/*.log"
    )
    print(f"KUBECONFIG={plane.kubeconfig}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
