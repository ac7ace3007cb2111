"""Authenticating pods by their projected ServiceAccount tokens, through the Kubernetes TokenReview API.

The checks follow SPIRE's k8s_psat node attestor (reference/spiffe.md §4): the API server must authenticate the
token with no error and confirm our audience; the username must be ``system:serviceaccount:NS:SA`` and, for node
agents, on the allow-list; the token must be bound to a pod whose name and UID are in the user's extras; that pod must
still exist with that UID; and its node must exist. The issuer never verifies the JWT itself: only the API server knows
whether the bound pod and ServiceAccount are still alive (https://kubernetes.io/docs/reference/kubernetes-api/
authentication-resources/token-review-v1/).

Verdicts are cached by token digest (see :mod:`.tokencache`): successes for 60 s or until the token expires,
refusals for 5 s. An unreachable API server is never cached: the next request asks again, and until it answers,
authentication fails closed with ``kubernetes_unavailable``.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Callable, Iterable

import structlog
from prometheus_client import CollectorRegistry, Counter

from sigil.issuer.errors import (
    AudienceMismatchError,
    AuthenticationError,
    AuthorizationError,
    BoundPodNotFoundError,
    BoundPodUidMismatchError,
    IssuerError,
    KubernetesUnavailableError,
    NodeNotFoundError,
    ServiceAccountNotAllowedError,
    TokenMissingError,
    TokenNotAuthenticatedError,
    TokenNotBoundToPodError,
)
from sigil.issuer.kube.api import KubeApi
from sigil.issuer.kube.identity import KubeIdentity, ServiceAccountRef
from sigil.issuer.kube.payloads import TokenReviewStatus
from sigil.issuer.kube.podcache import PodCache
from sigil.issuer.kube.tokencache import CachedVerdict, TokenCache, token_digest, unverified_expiry

__all__ = ["DEFAULT_AUDIENCE", "TokenReviewAuthenticator", "TokenReviewMetrics"]

DEFAULT_AUDIENCE = "sigil-server"
_SA_PREFIX = "system:serviceaccount:"
_EXTRA = "authentication.kubernetes.io/"

log = structlog.get_logger(__name__)


class TokenReviewMetrics:
    """Prometheus counters for token authentication, registered in the registry the service passes in."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # A private registry by default: tests and second instances must not collide in the global one.
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.reviews = Counter(
            "sigil_tokenreview_requests",
            "TokenReview calls made to the Kubernetes API, by outcome",
            ["authenticator", "outcome"],
            registry=self.registry,
        )
        self.cache_hits = Counter(
            "sigil_tokenreview_cache_hits",
            "Token verdicts answered from the cache without calling the Kubernetes API",
            ["authenticator"],
            registry=self.registry,
        )
        self.refusals = Counter(
            "sigil_kube_auth_refusals",
            "Kubernetes token authentications refused, by reason",
            ["authenticator", "reason"],
            registry=self.registry,
        )


class TokenReviewAuthenticator:
    """Turns a projected ServiceAccount token into a :class:`KubeIdentity`, or raises an issuer error.

    Build one per kind of caller: node agents (audience ``sigil-server``, an allow-list of agent ServiceAccounts)
    and agentless workloads (their own audience, ``allowed_service_accounts=None`` for any ServiceAccount). With
    ``pods`` (the issuer's watched pod cache), a cached success is reused only while the watch holds its pod.
    """

    def __init__(
        self,
        api: KubeApi,
        *,
        audience: str = DEFAULT_AUDIENCE,
        allowed_service_accounts: Iterable[ServiceAccountRef | str] | None = None,
        name: str = "agent",
        clock: Callable[[], float] = time.time,
        metrics: TokenReviewMetrics | None = None,
        success_ttl: float = 60.0,
        failure_ttl: float = 5.0,
        max_entries: int = 10_000,
        pods: PodCache | None = None,
    ) -> None:
        if not audience:
            raise ValueError("the audience must not be empty")
        self._api = api
        self.audience = audience
        self.allowed: frozenset[ServiceAccountRef] | None = None
        if allowed_service_accounts is not None:
            self.allowed = frozenset(
                a if isinstance(a, ServiceAccountRef) else ServiceAccountRef.parse(a)
                for a in allowed_service_accounts
            )
        self.name = name
        self._clock = clock
        self.metrics = metrics if metrics is not None else TokenReviewMetrics()
        self._success_ttl = success_ttl
        self._failure_ttl = failure_ttl
        self.cache = TokenCache(clock=clock, max_entries=max_entries)
        self._pods = pods
        # Concurrent requests with one token share one review instead of stampeding the API server.
        self._inflight: dict[str, asyncio.Task[CachedVerdict]] = {}

    async def authenticate(self, token: str) -> KubeIdentity:
        """The pod ``token`` was issued to, or :class:`AuthenticationError`, :class:`AuthorizationError` or
        :class:`KubernetesUnavailableError`."""
        if not token:
            raise TokenMissingError
        digest = token_digest(token)
        verdict = self._live(digest)
        if verdict is not None:
            self.metrics.cache_hits.labels(self.name).inc()
        else:
            task = self._inflight.get(digest)
            if task is None:
                task = asyncio.create_task(
                    self._review(token, digest), name=f"tokenreview-{digest[:12]}"
                )
                self._inflight[digest] = task
                task.add_done_callback(self._forget)
            try:
                verdict = await asyncio.shield(task)
            except KubernetesUnavailableError as err:
                self.metrics.refusals.labels(self.name, err.reason).inc()
                raise
        if isinstance(verdict.outcome, IssuerError):
            self.metrics.refusals.labels(self.name, verdict.outcome.reason).inc()
            # A copy: raising the cached instance would tie this request's frames, token included, to the cache.
            raise copy.copy(verdict.outcome)
        return verdict.outcome

    def _live(self, digest: str) -> CachedVerdict | None:
        """The cached verdict, unless it is a success for a pod the synced pod watch no longer holds.

        Kubernetes invalidates a bound token when its pod is deleted; a cached success must not outlive that
        by up to ``success_ttl``. A pod the watch has not seen yet also counts as a miss, which costs one review.
        """
        verdict = self.cache.get(digest)
        if verdict is None or self._pods is None or isinstance(verdict.outcome, IssuerError):
            return verdict
        if self._pods.synced and self._pods.pod_by_uid(verdict.outcome.pod_uid) is None:
            self.cache.drop(digest)
            return None
        return verdict

    def _forget(self, task: asyncio.Task[CachedVerdict]) -> None:
        for digest, running in list(self._inflight.items()):
            if running is task:
                del self._inflight[digest]
        if not task.cancelled():
            task.exception()  # retrieved here, so a review whose callers all left logs no "never retrieved"

    async def aclose(self) -> None:
        """Cancel reviews still in flight (their callers get ``CancelledError``)."""
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _review(self, token: str, digest: str) -> CachedVerdict:
        token_id = digest[:16]  # enough to correlate log lines, useless to replay
        try:
            identity = await self._check(token)
        except KubernetesUnavailableError as err:
            self.metrics.reviews.labels(self.name, "unavailable").inc()
            log.warning(
                "kube_auth.unavailable",
                authenticator=self.name,
                token_id=token_id,
                detail=err.detail,
            )
            raise  # not cached: the next request asks the API server again
        except (AuthenticationError, AuthorizationError) as err:
            self.metrics.reviews.labels(self.name, "refused").inc()
            log.info(
                "kube_auth.refused",
                authenticator=self.name,
                token_id=token_id,
                check=err.reason,
                detail=err.detail,
            )
            # Cached without its traceback, whose frames hold the token.
            verdict = CachedVerdict(self._clock() + self._failure_ttl, err.with_traceback(None))
        else:
            self.metrics.reviews.labels(self.name, "authenticated").inc()
            now = self._clock()
            expires_at = now + self._success_ttl
            exp = unverified_expiry(token)
            if exp is not None:
                expires_at = min(expires_at, exp)
            log.info(
                "kube_auth.authenticated",
                authenticator=self.name,
                token_id=token_id,
                pod=identity.pod_name,
            )
            verdict = CachedVerdict(expires_at, identity)
        self.cache.put(digest, verdict)
        return verdict

    async def _check(self, token: str) -> KubeIdentity:
        status = await self._api.review_token(token, [self.audience])
        if status.get("error") or not status.get("authenticated"):
            raise TokenNotAuthenticatedError(status.get("error", ""))
        returned = tuple(status.get("audiences", ()))
        if self.audience not in returned:
            raise AudienceMismatchError(self.audience, returned)
        namespace, service_account, pod_name, pod_uid = self._bound_pod(status)
        if (
            self.allowed is not None
            and ServiceAccountRef(namespace, service_account) not in self.allowed
        ):
            raise ServiceAccountNotAllowedError(namespace, service_account)
        pod = await self._api.read_pod(namespace, pod_name)
        if pod is None:
            raise BoundPodNotFoundError(namespace, pod_name)
        live_uid = pod.get("metadata", {}).get("uid", "")
        if live_uid != pod_uid:
            raise BoundPodUidMismatchError(namespace, pod_name, token_uid=pod_uid, pod_uid=live_uid)
        node_name = pod.get("spec", {}).get("nodeName", "")
        node = await self._api.read_node(node_name) if node_name else None
        if node is None:
            raise NodeNotFoundError(node_name)
        node_uid = node.get("metadata", {}).get("uid", "")
        return KubeIdentity(namespace, service_account, pod_name, pod_uid, node_name, node_uid)

    @staticmethod
    def _bound_pod(status: TokenReviewStatus) -> tuple[str, str, str, str]:
        """Namespace, ServiceAccount, pod name and pod UID from an authenticated review."""
        user = status.get("user", {})
        username = user.get("username", "")
        parts = username.split(":")
        if not username.startswith(_SA_PREFIX) or len(parts) != 4 or not all(parts):
            raise TokenNotBoundToPodError(username, "not a ServiceAccount")
        extra = user.get("extra", {})
        pod_names, pod_uids = extra.get(_EXTRA + "pod-name", []), extra.get(_EXTRA + "pod-uid", [])
        if len(pod_names) != 1 or len(pod_uids) != 1:
            raise TokenNotBoundToPodError(username, "the token is not bound to exactly one pod")
        return parts[2], parts[3], pod_names[0], pod_uids[0]
