"""The node agent assembled: issuer client, agent identity, SVID cache and the Workload API endpoint.

``sigil-agent run`` builds one :class:`NodeAgent` from its settings and holds it open until SIGTERM. Start-up order
matters: the agent's own identity and the bundles first (a workload asking before then could only be told
``Unavailable``), the socket last; shutdown runs the other way round, so a workload's stream ends before the SVIDs
behind it go away and the client reconnects to the next agent.

The trust to verify the issuer with comes from, in order: the bundle stored by the last run (the CA may have rotated
since the bootstrap file was written), the ``trust_bundle_path`` PEM file, or, with ``insecure_bootstrap``, whatever
the issuer presents on first contact (SPIRE's option of the same name; development only).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import structlog
from cryptography import x509

from sigil.ca.bundle import TrustBundle
from sigil.ca.spiffe_id import TrustDomain
from sigil.issuer.client import AgentSvid, IssuerApi, IssuerClient
from sigil.kit import Service, TaskOwner
from sigil.node_agent.attestation.attestors import WorkloadAttestor
from sigil.node_agent.attestation.attestors.k8s import (
    InMemoryPodIndex,
    K8sAttestor,
    K8sAttestorSettings,
)
from sigil.node_agent.attestation.attestors.unix import UnixAttestor, UnixAttestorSettings
from sigil.node_agent.attestation.caller import Attestation
from sigil.node_agent.attestation.pod_sync import PodSync
from sigil.node_agent.errors import AgentAttestationError, AgentConfigError
from sigil.node_agent.policies.mirror import PolicyMirror
from sigil.node_agent.rotation import Backoff
from sigil.node_agent.settings import AgentSettings, AttestationSettings
from sigil.node_agent.svid_cache.cache import SvidCache
from sigil.node_agent.upstream.agent_svid import (
    AgentIdentity,
    Attest,
    StoredIdentity,
    load_stored_identity,
)
from sigil.node_agent.upstream.issuer_link import fetch_bundle_insecurely
from sigil.node_agent.workload_api.endpoint import WorkloadApiServer, WorkloadApiSettings

__all__ = ["NodeAgent"]

_log = structlog.get_logger(__name__)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _read_pem_bundle(path: Path, trust_domain: TrustDomain) -> TrustBundle:
    try:
        certificates = x509.load_pem_x509_certificates(path.read_bytes())
    except OSError as err:
        raise AgentConfigError(str(path), f"cannot read the trust bundle ({err.strerror})") from err
    except ValueError as err:
        raise AgentConfigError(str(path), "not a PEM bundle of CA certificates") from err
    return TrustBundle(trust_domain, x509_authorities=tuple(certificates))


def _attestation_of(settings: AttestationSettings) -> Attest:
    """The attestation call the settings describe (it reads the token file at the time of the call)."""

    async def attest(issuer: IssuerApi) -> AgentSvid:
        if settings.method == "k8s":
            try:
                token = (await asyncio.to_thread(settings.token_path.read_text)).strip()
            except OSError as err:
                raise AgentAttestationError(
                    f"cannot read the projected token {settings.token_path} ({err.strerror})"
                ) from err
            return await issuer.attest_k8s(token, settings.cluster)
        if not settings.join_token:
            raise AgentAttestationError(
                "no stored agent SVID and no join token (set attestation.join_token or SIGIL_JOIN_TOKEN)"
            )
        return await issuer.attest_join_token(settings.join_token)

    return attest


class NodeAgent(Service):
    """``async with NodeAgent(settings) as agent:`` serves the Workload API until the block ends."""

    def __init__(
        self,
        settings: AgentSettings,
        *,
        clock: Callable[[], datetime] = _utc_now,
        rng: random.Random | None = None,
        attestors: list[WorkloadAttestor] | None = None,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 -- rotation jitter, not a secret
        self._attestors = attestors
        self._client: IssuerClient | None = None
        self._svid_cache: SvidCache | None = None
        self._server: WorkloadApiServer | None = None
        self._identity: AgentIdentity | None = None
        self._tasks = TaskOwner("node agent")
        #: With ``node_name``: this node's pods, from the issuer (pod_sync.py).
        self.pods: PodSync | None = None
        #: The policies served to local enforcers (policies/mirror.py), current while the agent runs.
        self.policies: PolicyMirror | None = None

    @property
    def svid_cache(self) -> SvidCache:
        if self._svid_cache is None:
            raise RuntimeError("the agent is not started")
        return self._svid_cache

    @property
    def identity(self) -> AgentIdentity:
        if self._identity is None:
            raise RuntimeError("the agent is not started")
        return self._identity

    @property
    def endpoint(self) -> str:
        return self.settings.endpoint

    def readiness(self) -> tuple[bool, str]:
        """Whether the agent serves the Workload API with a valid agent SVID, and if not, why."""
        if self._server is None or self._identity is None:
            return False, "starting: not yet attested or not yet listening"
        agent = self._client.agent_svid if self._client is not None else None
        if agent is None:
            return False, "no agent SVID"
        refusal = self._identity.refusal
        if refusal is not None:
            return False, refusal
        if agent.svid.expires_at <= self._clock():
            return False, "the agent SVID has expired and could not be renewed yet"
        return True, "serving"

    async def _bootstrap_bundle(self) -> tuple[TrustBundle, StoredIdentity]:
        s = self.settings
        stored = await asyncio.to_thread(load_stored_identity, s.data_dir, s.trust_domain)
        if stored.bundle is not None and stored.bundle.x509_authorities:
            return stored.bundle, stored
        if s.trust_bundle_path is not None:
            bundle = await asyncio.to_thread(_read_pem_bundle, s.trust_bundle_path, s.trust_domain)
            return bundle, stored
        _log.warning("insecure_bootstrap: trusting the issuer's first answer (development only)")
        return await fetch_bundle_insecurely(s.issuer_url, s.trust_domain), stored

    async def start(self) -> None:
        """Resume or attest, fetch bundles, then listen on the socket."""
        s = self.settings
        try:
            bundle, stored = await self._bootstrap_bundle()
            self._client = IssuerClient(s.issuer_url, bundle=bundle, server_id=s.server_id)
            self._identity = AgentIdentity(
                s.data_dir,
                self._client,
                attest=_attestation_of(s.attestation),
                clock=self._clock,
                rng=self._rng,
                backoff=Backoff(initial=s.rotation.backoff_initial, maximum=s.rotation.backoff_max),
                stored=stored,
                # A projected token can be read again; a join token is spent by its first use.
                reattest=s.attestation.method == "k8s",
            )
            self._svid_cache = SvidCache(
                self._client,
                settings=s.rotation,
                identity=self._identity,
                clock=self._clock,
                rng=self._rng,
            )
            await self._svid_cache.start()
            attestors = self._attestors or [
                UnixAttestor(UnixAttestorSettings(discover_workload_path=s.discover_workload_path)),
                *self._pod_attestors(self._svid_cache),
            ]
            self.policies = PolicyMirror(
                self._client,
                wait=s.rotation.bundle_wait.total_seconds(),
                backoff=Backoff(initial=s.rotation.backoff_initial, maximum=s.rotation.backoff_max),
                directory=s.data_dir,
            )
            await self.policies.load_stored()
            self._tasks.spawn(self.policies.run(), name="sigil-policy-sync")
            self._server = WorkloadApiServer(
                WorkloadApiSettings(socket_path=s.socket_path),
                source=self._svid_cache,
                attestor=Attestation(attestors),
                clock=self._clock,
                policies=self.policies,
            )
            await self._server.start()
        except BaseException:
            await self.aclose()
            raise
        _log.info("node agent ready", endpoint=self.endpoint, agent=str(self._identity.spiffe_id))

    def _pod_attestors(self, svid_cache: SvidCache) -> list[WorkloadAttestor]:
        """With ``node_name``: the ``k8s`` attestor over an index the issuer's node-pods feed keeps current."""
        s = self.settings
        if s.node_name is None or self._client is None:
            return []
        index = InMemoryPodIndex()
        self.pods = PodSync(
            self._client,
            index,
            on_delete=svid_cache.forget_pod,
            wait=s.rotation.bundle_wait.total_seconds(),
            backoff=Backoff(initial=s.rotation.backoff_initial, maximum=s.rotation.backoff_max),
        )
        self._tasks.spawn(self.pods.run(), name="sigil-node-pods")
        return [K8sAttestor(index, K8sAttestorSettings(node_name=s.node_name))]

    async def aclose(self) -> None:
        """Close the socket (streams end), stop rotating and watching, close the issuer connection."""
        server, self._server = self._server, None
        tasks, self._tasks = self._tasks, TaskOwner("node agent")
        svid_cache, self._svid_cache = self._svid_cache, None
        client, self._client = self._client, None
        try:
            if server is not None:
                await server.aclose()
            await tasks.aclose()
        finally:
            if svid_cache is not None:
                await svid_cache.aclose()
            if client is not None:
                await client.aclose()
