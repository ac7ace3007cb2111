"""Where a workload's own X509-SVID and its trust bundles come from: the Workload API, or files.

The Workload API (SPIFFE_Workload_Endpoint.md) pushes a full new state whenever the agent rotates the SVID or
a bundle changes; py-spiffe's :class:`spiffe.X509Source` follows that stream on a thread of its own and calls us
back there. :class:`~sigil.enforcer.workload_source.WorkloadApiSource` (a module of its own, so that what
only needs these types does not import py-spiffe and grpcio) turns each update into an immutable :class:`X509Material` and hands it
to subscribers *on the event loop's thread*, where asyncio creates its TLS objects, so that reloading a
context never races a handshake being set up. :class:`StaticSource` serves the same material from the files
``sigil-server x509 mint --write`` leaves (``svid.pem``, ``key.pem``, ``bundle.pem``), for tests and for
workloads without an agent; :meth:`StaticSource.reload` re-reads them after a rotation on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from sigil.ca.bundle import TrustBundle
from sigil.ca.errors import CaError
from sigil.ca.spiffe_id import SpiffeId, TrustDomain, spiffe_id_of
from sigil.enforcer.bundles import BundleSet
from sigil.enforcer.errors import IdentitySourceError

__all__ = ["IdentitySource", "Publisher", "StaticSource", "X509Material"]

Subscriber = Callable[["X509Material"], None]


@dataclass(frozen=True, slots=True)
class X509Material:
    """One coherent state: the workload's SVID (leaf first), its key, and the bundles it trusts."""

    spiffe_id: SpiffeId
    chain: tuple[x509.Certificate, ...]
    private_key: PrivateKeyTypes
    bundles: BundleSet

    def chain_pem(self) -> bytes:
        """The SVID chain as PEM, leaf first."""
        return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in self.chain)

    def key_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM (it never touches a disk; see tls.py)."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


class IdentitySource(Protocol):
    """What the TLS builders need: the current material, and a call on the loop whenever it changes."""

    def current(self) -> X509Material: ...

    def subscribe(self, callback: Subscriber) -> None: ...

    def unsubscribe(self, callback: Subscriber) -> None: ...


class Publisher:
    """The material in force and the subscribers told of each new one (the base of every source)."""

    def __init__(self, material: X509Material) -> None:
        self._material = material
        self._subscribers: list[Subscriber] = []

    def current(self) -> X509Material:
        """The material in force."""
        return self._material

    def subscribe(self, callback: Subscriber) -> None:
        """Call ``callback`` with every new material, on the event loop's thread."""
        self._subscribers.append(callback)

    def unsubscribe(self, callback: Subscriber) -> None:
        """Stop calling ``callback``; unknown callbacks are ignored."""
        with contextlib.suppress(ValueError):
            self._subscribers.remove(callback)

    def _publish(self, material: X509Material) -> None:
        self._material = material
        for callback in list(self._subscribers):
            callback(material)


class StaticSource(Publisher):
    """SVID, key and bundles read from PEM files; federated bundles are given per trust domain."""

    def __init__(
        self,
        svid: Path,
        key: Path,
        bundle: Path,
        *,
        federated: Mapping[TrustDomain, Path] | None = None,
    ) -> None:
        self._paths = (svid, key, bundle, dict(federated or {}))
        super().__init__(self._read())

    def reload(self) -> X509Material:
        """Re-read the files and publish, here and now (for programs without an event loop)."""
        material = self._read()
        self._publish(material)
        return material

    async def refresh(self) -> X509Material:
        """Re-read the files in a worker thread, then publish on the loop (where TLS objects are made)."""
        material = await asyncio.to_thread(self._read)
        self._publish(material)
        return material

    def stamp(self) -> tuple[tuple[int, int], ...]:
        """The files' (mtime, size): a change means :meth:`refresh` (blocking: call it in a thread)."""
        stamps = []
        svid, key, bundle, federated = self._paths
        for path in (svid, key, bundle, *federated.values()):
            try:
                stat = path.stat()
            except OSError:
                stamps.append((-1, -1))
            else:
                stamps.append((stat.st_mtime_ns, stat.st_size))
        return tuple(stamps)

    def _read(self) -> X509Material:
        svid, key, bundle, federated = self._paths
        try:
            chain = tuple(x509.load_pem_x509_certificates(svid.read_bytes()))
            private_key = serialization.load_pem_private_key(key.read_bytes(), password=None)
            spiffe_id = spiffe_id_of(chain[0])
            own = TrustBundle.parse_pem(spiffe_id.trust_domain, bundle.read_bytes())
            others = BundleSet.from_pem_files(federated)
        except OSError as err:
            raise IdentitySourceError(str(err.filename), err.strerror or str(err)) from err
        except (ValueError, TypeError, x509.ExtensionNotFound, CaError) as err:
            raise IdentitySourceError(str(svid.parent), f"unusable SVID files: {err}") from err
        return X509Material(spiffe_id, chain, private_key, others.with_bundle(own))
