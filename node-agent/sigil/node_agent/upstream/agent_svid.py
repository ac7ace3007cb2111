"""The agent's own identity: attested once, kept on disk, renewed before half-life.

The issue asks that a restart does not re-attest (a join token is spent by its first use, and a projected token
should not be reviewed on every restart). So the agent SVID, its key and the last trust bundle live in the agent's
data directory, each written atomically with mode 0600 (``sigil.ca.keys.write_secret_file``); at start, a stored SVID
that has not expired is used as it is, and the stored bundle (newer than the bootstrap one, which may have rotated
away) verifies the issuer. The agent SVID rotates like a workload's later SVIDs, between 40% and 50% of its life
(``rotation.py``).

The issuer may stop accepting the agent SVID before it expires: an operator evicted the agent, a copy of it was
renewed and used first (superseded), the node was replaced, its authority was revoked, or the agent was banned.
Every call the agent makes then fails the same way, so waiting does not help. Like SPIRE's agent with a node
attestor that can attest again (``k8s_psat``), an agent attesting with a projected ServiceAccount token attests
afresh with the token file's current contents, which gives it a new SVID and retires every other serial of its ID
(a copy included). A join-token agent cannot: its token was spent by its first use. It says so in an error log
and in ``/ready``, and keeps serving what is still valid until an operator enrols it again. Attestations the issuer
refuses (a banned agent) are retried with backoff, never in a loop.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from sigil.ca.bundle import TrustBundle
from sigil.ca.errors import SigilError
from sigil.ca.keys import load_private_key, write_private_key, write_secret_file
from sigil.ca.spiffe_id import SpiffeId, TrustDomain, spiffe_id_of
from sigil.issuer.client import AgentSvid, IssuedX509Svid, IssuerApi, Refusal
from sigil.node_agent.errors import AgentAttestationError, IssuerUnreachableError
from sigil.node_agent.rotation import Backoff, rotation_at
from sigil.node_agent.upstream.issuer_link import call_issuer

__all__ = ["AgentIdentity", "Attest", "StoredIdentity", "load_stored_identity"]

_SVID_FILE = "agent-svid.pem"
_KEY_FILE = "agent-svid.key"
_BUNDLE_FILE = "bundle.json"

_log = structlog.get_logger(__name__)

Attest = Callable[[IssuerApi], Awaitable[AgentSvid]]


@dataclass(frozen=True, slots=True)
class StoredIdentity:
    """What the data directory held: the agent SVID (if any) and the last bundle (if any)."""

    agent: AgentSvid | None
    bundle: TrustBundle | None


def _signer_ids_of(leaf: x509.Certificate) -> frozenset[str]:
    # A stored SVID has no issuer answer beside it. Its signer is the authority whose key identifier the leaf names
    # (RFC 5280 4.2.1.1), which is how sigil.ca.authority derives an authority's ID, so this agrees with what the
    # issuer sent with the SVID when it was new.
    try:
        aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        return frozenset()
    return frozenset() if aki.key_identifier is None else frozenset({aki.key_identifier.hex()})


def load_stored_identity(directory: Path, trust_domain: TrustDomain) -> StoredIdentity:
    """Read the agent's files (blocking: file I/O); missing files give ``None`` parts, broken ones an error."""
    agent: AgentSvid | None = None
    bundle: TrustBundle | None = None
    svid_path, key_path, bundle_path = (
        directory / _SVID_FILE,
        directory / _KEY_FILE,
        directory / _BUNDLE_FILE,
    )
    try:
        if svid_path.exists() and key_path.exists():
            chain = tuple(x509.load_pem_x509_certificates(svid_path.read_bytes()))
            leaf = chain[0]
            svid = IssuedX509Svid(
                spiffe_id_of(leaf), chain, leaf.not_valid_after_utc, _signer_ids_of(leaf)
            )
            agent = AgentSvid(svid, load_private_key(key_path))
        if bundle_path.exists():
            bundle = TrustBundle.parse_jwks(trust_domain, bundle_path.read_bytes())
    except (ValueError, SigilError) as err:
        raise AgentAttestationError(
            f"the stored agent identity in {directory} is unusable: {err}"
        ) from err
    return StoredIdentity(agent, bundle)


def _store(directory: Path, agent: AgentSvid | None, bundle: TrustBundle | None) -> None:
    if agent is not None:
        chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in agent.svid.chain)
        # The key first: a crash between the two writes leaves an old SVID over a new key, which fails to load
        # as a pair (TLS refuses it) and leads to re-attestation, rather than an SVID whose key was never written.
        write_private_key(directory / _KEY_FILE, agent.private_key)
        write_secret_file(directory / _SVID_FILE, chain)
    if bundle is not None:
        write_secret_file(directory / _BUNDLE_FILE, bundle.to_json())


class AgentIdentity:
    """Holds the agent SVID: :meth:`start` once, then :meth:`renew` whenever :attr:`renew_at` has passed."""

    def __init__(
        self,
        directory: Path,
        issuer: IssuerApi,
        *,
        attest: Attest,
        clock: Callable[[], datetime],
        rng: random.Random,
        backoff: Backoff,
        stored: StoredIdentity | None = None,
        reattest: bool = False,
    ) -> None:
        self._directory = directory
        self._issuer = issuer
        self._attest = attest
        self._clock = clock
        self._rng = rng
        self._backoff = backoff
        self._stored = stored
        self._reattest = reattest
        self._renew_at: datetime | None = None
        #: The issuer's refusal of the agent SVID, while it stands.
        self._refused: Refusal | None = None
        self.attestations = 0

    @property
    def renew_at(self) -> datetime | None:
        """When the agent SVID is due for renewal (None before :meth:`start`)."""
        return self._renew_at

    @property
    def spiffe_id(self) -> SpiffeId | None:
        agent = self._issuer.agent_svid
        return agent.svid.spiffe_id if agent is not None else None

    @property
    def refusal(self) -> str | None:
        """Why the issuer refuses the agent SVID and what the agent does about it; None while it is accepted."""
        if self._refused is None:
            return None
        refused = self._refused
        said = f"the issuer refuses the agent SVID ({refused.reason}: {refused.detail})"
        if refused.banned:
            return f"{said}; an operator must unban it (sigil-server agent unban)"
        if not self._reattest:
            return f"{said}; a join-token agent cannot attest again: enrol it with a new join token"
        return f"{said}; attesting again"

    def refused(self, err: BaseException) -> bool:
        """Note what a call to the issuer met; True when it refused the agent SVID itself.

        The first such refusal makes a fresh attestation due at once (where the method allows one); later ones
        leave the schedule alone, so an agent refused on every call does not attest on every call. A refusal of
        an agent SVID the agent no longer holds (a long poll sent before it attested again or renewed, answered
        after) says nothing about the one it holds now, and is not noted.
        """
        refusal = Refusal.of(err)
        if refusal is None or not refusal.refuses_agent:
            return False
        held = self._issuer.agent_svid
        if refusal.presented_serial is not None and (
            held is None or held.svid.chain[0].serial_number != refusal.presented_serial
        ):
            _log.info(
                "the issuer refused an agent SVID no longer held; the current one stands",
                reason=refusal.reason,
                refused_serial=f"{refusal.presented_serial:x}",
            )
            return False
        first = self._refused is None
        self._refused = refusal
        if first:
            if self._reattest:
                _log.warning(
                    "the issuer refuses the agent SVID; attesting again",
                    reason=self._refused.reason,
                    error=str(err),
                )
                self._renew_at = self._clock()
            else:
                _log.error(
                    "the issuer refuses the agent SVID and a join-token agent cannot attest again; "
                    "serving what is still valid until it is enrolled with a new join token",
                    reason=self._refused.reason,
                    error=str(err),
                )
        return True

    def accepted(self) -> None:
        """A call with the agent SVID succeeded: whatever refusal was noted no longer stands."""
        if self._refused is not None:
            _log.info("the issuer accepts the agent SVID again", reason=self._refused.reason)
            self._refused = None

    async def start(self) -> None:
        """Resume the stored agent SVID if it is still valid; attest otherwise."""
        stored = self._stored
        if stored is None:
            stored = await asyncio.to_thread(
                load_stored_identity, self._directory, self._issuer.trust_bundle.trust_domain
            )
        now = self._clock()
        if stored.agent is not None and stored.agent.svid.expires_at > now:
            await self._issuer.set_agent_svid(stored.agent)
            _log.info(
                "resumed the stored agent SVID; no attestation",
                spiffe_id=str(stored.agent.svid.spiffe_id),
                expires_at=stored.agent.svid.expires_at.isoformat(),
            )
            # Its half-life counts from when it was issued, not from this restart.
            self._schedule(min(now, stored.agent.svid.chain[0].not_valid_before_utc))
        else:
            await self._attest_now()
            self._schedule(now)

    async def _attest_now(self) -> None:
        # An issuer that is not up yet (a node booting with the control plane) is waited for, with backoff;
        # a refusal (a spent join token, an unknown node) is final and stops the start.
        agent: AgentSvid | None = None
        while agent is None:
            try:
                agent = await call_issuer(self._attest(self._issuer))
            except IssuerUnreachableError as err:
                delay = self._backoff.next_delay().total_seconds()
                _log.warning(
                    "issuer unreachable; attesting again", error=str(err), retry_in_s=delay
                )
                await asyncio.sleep(delay)
            except SigilError as err:
                raise AgentAttestationError(str(err)) from err
        self.attestations += 1
        _log.info("attested to the issuer", spiffe_id=str(agent.svid.spiffe_id))
        await asyncio.to_thread(_store, self._directory, agent, self._issuer.trust_bundle)

    async def renew(self) -> None:
        """Replace the agent SVID over a fresh key, or attest afresh when the issuer refuses the current one.

        IssuerUnreachableError leaves the current SVID in use; AgentAttestationError says the issuer refused.
        """
        if self._refused is None:
            try:
                agent = await call_issuer(self._issuer.renew())
            except IssuerUnreachableError:
                raise
            except SigilError as err:
                if not self.refused(err):
                    raise AgentAttestationError(f"renewal refused: {err}") from err
            else:
                await asyncio.to_thread(_store, self._directory, agent, self._issuer.trust_bundle)
                _log.info("renewed the agent SVID", expires_at=agent.svid.expires_at.isoformat())
                self._schedule(self._clock())
                return
        await self._attest_again()

    async def _attest_again(self) -> None:
        said = self.refusal
        if not self._reattest:
            raise AgentAttestationError(said or "the issuer refuses the agent SVID")
        try:
            agent = await call_issuer(self._attest(self._issuer))
        except IssuerUnreachableError:
            raise
        except SigilError as err:
            refusal = Refusal.of(err)
            if refusal is not None and refusal.refuses_agent:
                self._refused = refusal
            delay = self._backoff.next_delay()
            self._renew_at = self._clock() + delay
            _log.error(
                "attesting again was refused; trying again later",
                reason=type(err).__name__ if refusal is None else refusal.reason,
                error=str(err),
                retry_in_s=round(delay.total_seconds(), 3),
            )
            raise AgentAttestationError(f"attesting again was refused: {err}") from err
        self._backoff.reset()
        self._refused = None
        await asyncio.to_thread(_store, self._directory, agent, self._issuer.trust_bundle)
        self.attestations += 1
        _log.info("attested to the issuer again", spiffe_id=str(agent.svid.spiffe_id))
        self._schedule(self._clock())

    async def store_bundle(self, bundle: TrustBundle) -> None:
        """Remember the latest own bundle, so that a restart verifies the issuer with it."""
        await asyncio.to_thread(_store, self._directory, None, bundle)

    def _schedule(self, received: datetime) -> None:
        agent = self._issuer.agent_svid
        if agent is None:
            raise AgentAttestationError("no agent SVID after start")
        self._renew_at = rotation_at(received, agent.svid.expires_at, self._rng)

    def renew_now(self) -> None:
        """Make renewal due at once (its signer was tainted)."""
        self._renew_at = self._clock()
