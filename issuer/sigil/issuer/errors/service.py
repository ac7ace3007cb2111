"""Refusals that are not about who the caller is: a malformed request, a rate, a missing dependency, a refused step.

Each has its own status in :data:`~sigil.issuer.errors.reasons.PROBLEMS`; the unavailable ones (503) fail closed and
are never cached.
"""

from __future__ import annotations

from sigil.issuer.errors.reasons import IssuerError

__all__ = [
    "AuthorityRefusedError",
    "BodyTooLargeError",
    "ConfigError",
    "FederationError",
    "KubernetesUnavailableError",
    "MalformedRequestError",
    "NotFoundError",
    "PolicyRefusedError",
    "RateLimitedError",
    "UnavailableError",
]


class KubernetesUnavailableError(IssuerError):
    """The Kubernetes API could not be asked, so nothing is authenticated: the issuer fails closed (HTTP 503)."""

    reason = "kubernetes_unavailable"

    def __init__(self, operation: str, cause: str) -> None:
        super().__init__(f"the Kubernetes API is unavailable ({operation}): {cause}")
        self.operation = operation
        self.cause = cause


class ConfigError(IssuerError):
    """A setting that cannot work; raised while the configuration is built, before serving."""

    reason = "invalid_config"

    def __init__(self, setting: str, why: str) -> None:
        super().__init__(f"{setting}: {why}")
        self.setting = setting
        self.why = why


class MalformedRequestError(IssuerError):
    """A request body or parameter that does not follow the wire contract."""

    reason = "malformed_request"

    def __init__(self, why: str) -> None:
        super().__init__(f"malformed request: {why}")
        self.why = why


class BodyTooLargeError(IssuerError):
    """A request body larger than the server accepts."""

    reason = "body_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is larger than {limit} bytes")
        self.limit = limit


class RateLimitedError(IssuerError):
    """A caller that asked faster than its rate; ``retry_after`` is in seconds."""

    reason = "rate_limited"

    def __init__(self, caller: str, retry_after: float) -> None:
        super().__init__(f"{caller} exceeded its request rate; retry in {retry_after:.1f}s")
        self.caller = caller
        self.retry_after = retry_after


class NotFoundError(IssuerError):
    """An admin request named something that does not exist (an entry, a path)."""

    reason = "not_found"

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} does not exist")
        self.what = what


class AuthorityRefusedError(IssuerError):
    """A manual authority step the CA refused (taint the active one, activate a revoked one, ...)."""

    reason = "authority_refused"

    def __init__(self, authority_id: str, why: str) -> None:
        super().__init__(why)
        self.authority_id = authority_id
        self.why = why


class PolicyRefusedError(IssuerError):
    """Policies sent to the admin API that break the schema; ``problems`` name the file, field and expectation."""

    reason = "policy_refused"

    def __init__(self, file: str, problems: tuple[str, ...]) -> None:
        super().__init__("; ".join(problems) if problems else f"{file}: refused")
        self.file = file
        self.problems = problems


class UnavailableError(IssuerError):
    """The server cannot answer now (no active authority yet, shutting down)."""

    reason = "unavailable"

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class FederationError(IssuerError):
    """One failed poll of a federated trust domain's bundle endpoint; logged and retried, never raised past the
    poller, so it never reaches HTTP."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why
