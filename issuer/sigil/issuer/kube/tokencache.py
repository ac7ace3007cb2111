"""A cache of token verdicts keyed by the token's SHA-256, so a leaked cache never leaks a credential.

A projected token is a bearer credential: anyone holding it is the pod until it expires. The cache therefore keys by
digest and stores only the verdict (an identity or a refusal, neither of which contains the token), and keeps a
success no longer than the token itself lives. The ``exp`` claim is read without verifying the signature, and is used
for nothing but shortening that lifetime: a forged ``exp`` can only make the issuer ask Kubernetes sooner.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sigil.issuer.errors import IssuerError
from sigil.issuer.kube.identity import KubeIdentity

__all__ = ["CachedVerdict", "TokenCache", "token_digest", "unverified_expiry"]


def token_digest(token: str) -> str:
    """The cache key for a token: its SHA-256 as 64 hex digits."""
    return hashlib.sha256(token.encode()).hexdigest()


def unverified_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT, unverified, or None when the token is not a JWT with a numeric ``exp``."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError):  # ValueError covers JSONDecodeError and UnicodeDecodeError
        return None
    exp = payload.get("exp") if isinstance(payload, dict) else None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


@dataclass(frozen=True, slots=True)
class CachedVerdict:
    """What a review concluded about a token (the pod, or the refusal), and until when that may be reused."""

    expires_at: float
    outcome: KubeIdentity | IssuerError


class TokenCache:
    """Verdicts by token digest, bounded in size, expired by an injected clock."""

    def __init__(self, *, clock: Callable[[], float], max_entries: int = 10_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._clock = clock
        self._max = max_entries
        self._entries: dict[str, CachedVerdict] = {}

    def get(self, digest: str) -> CachedVerdict | None:
        """The live verdict for ``digest``, dropping it if it has expired."""
        verdict = self._entries.get(digest)
        if verdict is not None and verdict.expires_at <= self._clock():
            del self._entries[digest]
            return None
        return verdict

    def put(self, digest: str, verdict: CachedVerdict) -> None:
        """Remember ``verdict`` unless it is already expired; evict the oldest entries beyond the bound."""
        now = self._clock()
        if verdict.expires_at <= now:
            return
        if len(self._entries) >= self._max:
            for key in [k for k, v in self._entries.items() if v.expires_at <= now]:
                del self._entries[key]
        while len(self._entries) >= self._max:
            del self._entries[
                next(iter(self._entries))
            ]  # dicts keep insertion order: the oldest first
        self._entries.pop(digest, None)
        self._entries[digest] = verdict

    def drop(self, digest: str) -> None:
        """Forget the verdict for ``digest`` (its pod is gone)."""
        self._entries.pop(digest, None)

    def items(self) -> Iterator[tuple[str, CachedVerdict]]:
        """Every entry, live or not yet evicted (for inspection and metrics)."""
        return iter(list(self._entries.items()))

    def __len__(self) -> int:
        return len(self._entries)
