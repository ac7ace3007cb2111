"""When to rotate an SVID and how long to wait after a failure: the agent's two timing rules.

SPIRE rotates X.509 SVIDs (the agent's own and the workloads') at half-life with a ±10% jitter
(``pkg/common/rotationutil``, spiffe/spire#4268 and #4534, reference §4): without the jitter, SVIDs issued in one
burst (an agent restart, a rollout) come due in the same second forever after, and the issuer sees a stampede every
half-life. We draw the jitter once per issued SVID from an injected ``random.Random``: the rotation point lies
uniformly between 40% and 60% of the lifetime, counted from the moment the agent received the SVID (not its
``notBefore``, which the CA back-dates). JWT-SVIDs are refreshed past half-life, without jitter: they are fetched on
demand, so they do not come due in bursts.

While the issuer is unreachable the agent waits exponentially longer between attempts, up to a cap, each wait drawn
between half and all of the current ceiling, so that the agents of a cluster do not come back in lockstep.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import structlog

from sigil import kit
from sigil.ca.errors import SigilError

__all__ = ["JITTER", "Backoff", "IssuerHealth", "jwt_refresh_at", "poll_forever", "rotation_at"]

#: Half-life ±10% of the lifetime: the rotation point is drawn from [0.4, 0.6] of the lifetime.
JITTER = 0.1


def rotation_at(received: datetime, not_after: datetime, rng: random.Random) -> datetime:
    """When an SVID received at ``received`` and expiring at ``not_after`` should be replaced."""
    lifetime = not_after - received
    if lifetime <= timedelta(0):
        return received
    fraction = 0.5 + rng.uniform(-JITTER, JITTER)
    return received + lifetime * fraction


def jwt_refresh_at(received: datetime, expires_at: datetime) -> datetime:
    """When a cached JWT-SVID is past its half-life and the next request should fetch a new one."""
    return received + max(expires_at - received, timedelta(0)) / 2


_poll_log = structlog.get_logger("sigil.node_agent")


class Backoff:
    """The kit's backoff rule (:class:`sigil.kit.Backoff`) in the agent's units; :meth:`reset` after a success."""

    def __init__(
        self, *, initial: timedelta, maximum: timedelta, rng: random.Random | None = None
    ) -> None:
        if initial <= timedelta(0) or maximum < initial:
            raise ValueError("backoff needs 0 < initial <= maximum")
        self._rule = kit.Backoff(
            first=initial.total_seconds(), longest=maximum.total_seconds(), rng=rng
        )

    @property
    def failures(self) -> int:
        """Consecutive failures since the last success."""
        return self._rule.failures

    def reset(self) -> None:
        """A success: the next failure waits about ``initial`` again."""
        self._rule.reset()

    def next_delay(self) -> timedelta:
        """Record a failure and return how long to wait before the next attempt."""
        return timedelta(seconds=self._rule.next_delay())


class IssuerHealth:
    """Whether the issuer is in a backoff window, shared by every kind of call the agent makes to it."""

    def __init__(self, backoff: Backoff, clock: Callable[[], datetime]) -> None:
        self._backoff = backoff
        self._clock = clock
        self.retry_at: datetime | None = None

    def down(self) -> bool:
        """True while the last failure's backoff has not run out: calls are not even tried."""
        return self.retry_at is not None and self._clock() < self.retry_at

    def failed(self) -> timedelta:
        """Record a failure; returns the wait before the next attempt."""
        delay = self._backoff.next_delay()
        self.retry_at = self._clock() + delay
        return delay

    def succeeded(self) -> None:
        self._backoff.reset()
        self.retry_at = None

    def not_before(self, when: datetime) -> datetime:
        """``when``, or the end of the backoff window if that is later."""
        return max(when, self.retry_at) if self.retry_at is not None else when


async def poll_forever(
    step: Callable[[], Awaitable[object]], backoff: Backoff, *, what: str
) -> None:
    """Run one long poll after another until cancelled; a failure keeps what the agent holds and backs off.

    The issuer's bundle and policy feeds are followed the same way: unreachable, refused or malformed answers alike
    leave the last good state in force and are retried after ``backoff``'s next delay.
    """
    while True:
        try:
            await step()
        except (SigilError, ValueError, KeyError) as err:
            delay = backoff.next_delay()
            _poll_log.warning(
                f"{what} update failed; retrying",
                error=str(err),
                retry_in_s=round(delay.total_seconds(), 3),
            )
            await asyncio.sleep(delay.total_seconds())
        else:
            backoff.reset()
