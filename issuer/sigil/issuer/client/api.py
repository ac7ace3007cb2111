"""The issuer's API as the node agent depends on it: one Protocol, implemented over HTTPS by ``IssuerClient``.

The agent's caches are written against this interface, not against HTTP, so tests and the benchmark drive them
with an in-process issuer. It lives with the client, beside the values it returns and the :class:`Refusal` its
failures carry, so that the agent imports the contract instead of keeping a copy of it that could drift.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from sigil.ca.bundle import TrustBundle
from sigil.ca.keys import PrivateKey
from sigil.issuer.agentapi import contract
from sigil.issuer.client.results import (
    AgentSvid,
    BundleUpdate,
    IssuedJwtSvid,
    X509SvidRequest,
    X509SvidResult,
)

__all__ = ["IssuerApi"]


class IssuerApi(Protocol):
    """The calls the node agent makes of the issuer.

    A call raises the issuer's error class for a refusal (``Refusal.of`` sorts it) and ``TimeoutError`` or
    ``OSError`` (``ssl``'s errors and :class:`~sigil.issuer.client.UnexpectedAnswerError` among them) when the
    issuer did not answer as the issuer.
    """

    @property
    def agent_svid(self) -> AgentSvid | None: ...

    @property
    def trust_bundle(self) -> TrustBundle: ...

    async def set_agent_svid(self, agent_svid: AgentSvid | None) -> None: ...

    async def attest_k8s(
        self, token: str, cluster: str, *, key: PrivateKey | None = None
    ) -> AgentSvid: ...

    async def attest_join_token(
        self, token: str, *, key: PrivateKey | None = None
    ) -> AgentSvid: ...

    async def renew(self, *, key: PrivateKey | None = None) -> AgentSvid: ...

    async def batch_x509_svids(
        self, requests: Sequence[X509SvidRequest]
    ) -> list[X509SvidResult]: ...

    async def jwt_svid(
        self,
        *,
        audience: Sequence[str],
        pod: contract.PodRef | None = None,
        selectors: Sequence[str] = (),
        spiffe_id: str | None = None,
    ) -> list[IssuedJwtSvid]: ...

    async def bundle(
        self,
        after_sequence: int | None = None,
        *,
        after_revision: str | None = None,
        wait: float | None = None,
    ) -> BundleUpdate: ...
