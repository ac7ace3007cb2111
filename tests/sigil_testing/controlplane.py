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
import contextlib
import json
import os
import secrets
import shutil
import signal
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
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sigil_testing.certificates import ca_certificate, server_certificate
from sigil_testing.network import free_ports

__all__ = ["ISSUER", "ControlPlane", "ControlPlaneError", "Tools", "build_tools"]

ISSUER = "https://kubernetes.default.svc.cluster.local"
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
        self._detach = detach
        self._ready_timeout = ready_timeout
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._argv: dict[str, list[str]] = {}

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
        for flag in self._argv.get("etcd", []):
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
        pid = self._pid("kube-apiserver")
        if pid is not None:
            _signal(pid, signal.SIGTERM)
            if not self._wait_exit("kube-apiserver", pid, timeout):
                _signal(pid, signal.SIGKILL)
                self._wait_exit("kube-apiserver", pid, timeout)
        self._children.pop("kube-apiserver", None)

    def start_apiserver(self) -> None:
        """Start kube-apiserver again, with the flags and port it had, and return once ``/readyz`` says ok.

        Its watch cache starts empty, so a watch from a resourceVersion older than the restart answers 410 Gone.
        """
        argv = self._argv.get("kube-apiserver")
        if argv is None:
            raise ControlPlaneError(
                f"{self.directory}: kube-apiserver was not started by this instance"
            )
        self._spawn("kube-apiserver", argv)
        self._wait_ready(self.url, self.admin_token)

    def running(self) -> list[str]:
        """The names of this directory's processes that are alive."""
        return [name for name in _PROCESSES if self._pid(name) is not None]

    def start(self) -> None:
        """Start etcd and kube-apiserver afresh (etcd's data is wiped) and return once ``/readyz`` says ok."""
        if alive := self.running():
            raise ControlPlaneError(f"{self.directory} is already up ({', '.join(alive)} running)")
        tools = self._tools or build_tools()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.kubeconfig.unlink(missing_ok=True)
        token = secrets.token_urlsafe(32)
        self._write_credentials(token)
        etcd_client, etcd_peer, secure = free_ports(3)
        try:
            self._spawn("etcd", [str(tools.etcd), *self._etcd_flags(etcd_client, etcd_peer)])
            self._spawn(
                "kube-apiserver",
                [str(tools.kube_apiserver), *self._apiserver_flags(etcd_client, secure)],
            )
            url = f"https://127.0.0.1:{secure}"
            self._wait_ready(url, token)
        except BaseException:
            self.stop()
            raise
        self._write_kubeconfig(url, token)

    def stop(self, *, timeout: float = 15.0) -> None:
        """SIGTERM each process, SIGKILL it after ``timeout`` seconds; remove the pid files and kubeconfig."""
        for name in _PROCESSES:
            pid = self._pid(name)
            if pid is not None:
                _signal(pid, signal.SIGTERM)
                if not self._wait_exit(name, pid, timeout):
                    _signal(pid, signal.SIGKILL)
                    self._wait_exit(name, pid, timeout)
            self._children.pop(name, None)
            (self.directory / f"{name}.pid").unlink(missing_ok=True)
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

    # ------------------------------------------------------------------------- files
    def _write_credentials(self, token: str) -> None:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = ca_certificate("sigil control plane CA", ca_key)
        serving_key = ec.generate_private_key(ec.SECP256R1())
        serving = server_certificate("kube-apiserver", serving_key, issuer=(ca, ca_key), days=365)
        # RSA, as kubeadm makes it: tokens are RS256 like a real cluster's.
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = serialization.Encoding.PEM
        self.ca_file.write_bytes(ca.public_bytes(pem))
        (self.directory / "serving.crt").write_bytes(serving.public_bytes(pem))
        _write_secret(self.directory / "serving.key", _private_pem(serving_key))
        _write_secret(self.directory / "sa.key", _private_pem(sa_key))
        (self.directory / "sa.pub").write_bytes(
            sa_key.public_key().public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        _write_secret(
            self.directory / "tokens.csv", f"{token},admin,admin-uid,system:masters\n".encode()
        )

    def _write_kubeconfig(self, url: str, token: str) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "sigil",
                    "cluster": {"server": url, "certificate-authority": str(self.ca_file)},
                }
            ],
            "users": [{"name": "admin", "user": {"token": token}}],
            "contexts": [{"name": "sigil", "context": {"cluster": "sigil", "user": "admin"}}],
            "current-context": "sigil",
        }
        _write_secret(self.kubeconfig, yaml.safe_dump(config, sort_keys=False).encode())

    # ------------------------------------------------------------------------- processes
    def _etcd_flags(self, client: int, peer: int) -> list[str]:
        data = self.directory / "etcd"
        shutil.rmtree(data, ignore_errors=True)
        client_url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
        return [
            "--name=controlplane",
            f"--data-dir={data}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=controlplane={peer_url}",
            # A test's etcd need not survive a power cut; fsync dominates its write latency otherwise.
            "--unsafe-no-fsync",
        ]

    def _apiserver_flags(self, etcd_client: int, secure: int) -> list[str]:
        d = self.directory
        return [
            f"--etcd-servers=http://127.0.0.1:{etcd_client}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={secure}",
            f"--cert-dir={d / 'certs'}",
            f"--tls-cert-file={d / 'serving.crt'}",
            f"--tls-private-key-file={d / 'serving.key'}",
            "--authorization-mode=RBAC",
            f"--token-auth-file={d / 'tokens.csv'}",
            f"--service-account-issuer={ISSUER}",
            f"--service-account-signing-key-file={d / 'sa.key'}",
            f"--service-account-key-file={d / 'sa.pub'}",
            "--service-cluster-ip-range=10.0.0.0/24",
            # The `kubernetes` Service's endpoints would be 127.0.0.1, which endpoint validation refuses.
            "--endpoint-reconciler-type=none",
            "--profiling=false",
        ]

    def _spawn(self, name: str, argv: list[str]) -> None:
        self._argv[name] = argv
        with (self.directory / f"{name}.log").open("wb") as log:
            child = subprocess.Popen(  # noqa: S603 - our own binaries and flags
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                start_new_session=self._detach,
            )
        self._children[name] = child
        (self.directory / f"{name}.pid").write_text(f"{child.pid}\n")

    def _pid(self, name: str) -> int | None:
        """The pid in ``name.pid`` if that process is alive and is ours (its command line names our directory)."""
        try:
            pid = int((self.directory / f"{name}.pid").read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, ValueError, IndexError):
            return None
        return pid if str(self.directory).encode() in cmdline and state != "Z" else None

    def _wait_exit(self, name: str, pid: int, timeout: float) -> bool:
        child = self._children.get(name)
        if child is not None:
            try:
                child.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        # Not our child (another process started it): it is reaped by init, so poll until it is gone.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._pid(name) is None:
                return True
            time.sleep(0.05)
        return False

    def _wait_ready(self, url: str, token: str) -> None:
        context = ssl.create_default_context(cafile=self.ca_file)
        deadline = time.monotonic() + self._ready_timeout
        while True:
            for name, child in self._children.items():
                if child.poll() is not None:
                    raise ControlPlaneError(
                        f"{name} exited with {child.returncode}:\n{self._log_tail(name)}"
                    )
            try:
                if _https(f"{url}/readyz", token, context, timeout=5) == b"ok":
                    return
            except OSError:
                pass  # not listening yet, or /readyz answered 500 with the checks still failing
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"kube-apiserver not ready after {self._ready_timeout:.0f} s:\n"
                    f"{self._log_tail('kube-apiserver')}"
                )
            time.sleep(0.1)

    def _log_tail(self, name: str, lines: int = 30) -> str:
        log = self.directory / f"{name}.log"
        try:
            return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
        except OSError as err:
            return f"({log}: {err})"


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


def _signal(pid: int, signum: signal.Signals) -> None:
    # It may have exited since we looked.
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _private_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_secret(path: Path, content: bytes) -> None:
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(content)


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
