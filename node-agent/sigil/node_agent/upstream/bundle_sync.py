"""The trust bundles the agent serves, kept current by the issuer's bundle long poll.

One request waits on the server until anything changes (the own bundle, a federated bundle, the set of tainted
authorities) or ``rotation.bundle_wait`` passes, so a rotation of the CA reaches every workload within a round trip
rather than a polling interval. While the issuer is away the agent keeps the bundles it has and retries with
backoff; it starts from the bundle it verifies the issuer with (the stored or bootstrap one) until the first answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import structlog

from sigil.ca.bundle import TrustBundle
from sigil.ca.errors import SigilError
from sigil.issuer.client import BundleUpdate, IssuerApi
from sigil.node_agent.identity_source import TrustBundles
from sigil.node_agent.rotation import Backoff, poll_forever
from sigil.node_agent.upstream.issuer_link import call_issuer

__all__ = ["BundleSync", "trust_bundles_of"]

_log = structlog.get_logger(__name__)

OnUpdate = Callable[[BundleUpdate], None]
#: Told the outcome of every long poll: None when the issuer answered, else the error.
OnAnswer = Callable[[BaseException | None], None]


def trust_bundles_of(own: TrustBundle, federated: Iterable[TrustBundle] = ()) -> TrustBundles:
    """The own bundle and the federated ones, as the Workload API serves them."""
    every = {own.trust_domain: own}
    for bundle in federated:
        every.setdefault(bundle.trust_domain, bundle)
    return TrustBundles(trust_domain=own.trust_domain, bundles=every)


class BundleSync:
    """Holds the current :class:`TrustBundles` and the tainted authority IDs; :meth:`run` keeps them current."""

    def __init__(
        self,
        issuer: IssuerApi,
        *,
        wait: float,
        backoff: Backoff,
        on_update: OnUpdate,
        on_answer: OnAnswer | None = None,
    ) -> None:
        self._issuer = issuer
        self._on_answer = on_answer
        self._wait = wait
        self._backoff = backoff
        self._on_update = on_update
        self._own = issuer.trust_bundle
        self._bundles = trust_bundles_of(self._own)
        self._tainted: frozenset[str] = frozenset()
        self._revision: str | None = None

    @property
    def bundles(self) -> TrustBundles:
        return self._bundles

    @property
    def own(self) -> TrustBundle:
        return self._own

    @property
    def tainted(self) -> frozenset[str]:
        """Authority IDs (X.509 subject key identifiers and JWT ``kid``s) the issuer has tainted."""
        return self._tainted

    @property
    def revision(self) -> str | None:
        return self._revision

    async def refresh(self, *, wait: float | None = None) -> bool:
        """One request (a long poll with ``wait``); True when something changed. Raises IssuerUnreachableError."""
        update = await call_issuer(self._issuer.bundle(after_revision=self._revision, wait=wait))
        if update.revision == self._revision:
            return False
        self.apply(update)
        return True

    def apply(self, update: BundleUpdate) -> None:
        """Adopt ``update`` and tell the owner."""
        self._revision = update.revision
        self._own = update.bundle
        self._bundles = trust_bundles_of(update.bundle, update.federated.values())
        self._tainted = update.tainted_authority_ids
        _log.info(
            "trust bundles updated",
            sequence=update.sequence,
            federated=sorted(str(td) for td in update.federated),
            tainted=len(update.tainted_authority_ids),
        )
        self._on_update(update)

    async def run(self) -> None:
        """Long-poll forever; the owner cancels it on shutdown."""
        await poll_forever(self._poll, self._backoff, what="bundle")

    async def _poll(self) -> None:
        try:
            await self.refresh(wait=self._wait)
        except SigilError as err:
            if self._on_answer is not None:
                self._on_answer(err)
            raise
        if self._on_answer is not None:
            self._on_answer(None)
