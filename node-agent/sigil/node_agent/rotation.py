"""When to rotate an SVID and how long to wait after a failure: the agent's two timing rules.

SPIRE's agent rotates an X.509 SVID once its remaining life is at most a half-life jittered by ±10% of itself,
re-drawn at every check (``pkg/common/rotationutil/rotationutil.go``, spiffe/spire#4268): in effect between 45% and
55% of the lifetime. SVIDs issued in one burst (an agent restart, a rollout, the end of an outage) still come due
within that narrow window, and their replacements within the next one: the stampede of spiffe/spire#1240, with the
issuer's busiest second about 2.5 times its mean for many lifetimes.

We never rotate later than half-life, and we draw the point once per issued SVID from an injected
``random.Random``, counted from the moment the agent received the SVID (not its ``notBefore``, which the CA
back-dates):

- the *first* SVID of a workload (one that held no valid SVID: it is new, or its SVIDs expired during an outage,
  which is exactly when many arrive together) rotates uniformly between 10% and 50% of its lifetime;
- every later one between 40% and 50%.

A burst of N SVIDs of lifetime L then rotates at N / 0.4L per second at first, against N / 0.45L in the steady
state: the busiest second is about 1.25 times the mean instead of 2.5 (``bench/agent.py`` measures it). The price is
one early rotation per workload, at most, and a steady rotation 5% of the lifetime earlier than SPIRE's centre; the
SVID is still never served within half its lifetime of expiry while the issuer answers. JWT-SVIDs are refreshed past
half-life, without jitter: they are fetched on demand, so they do not come due in bursts.

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

__all__ = [
    "FIRST_WINDOW",
    "STEADY_WINDOW",
    "Backoff",
    "IssuerHealth",
    "jwt_refresh_at",
    "poll_forever",
    "rotation_at",
]

#: Where in its lifetime a workload's first SVID rotates: wide, to spread a burst (see the module docstring).
FIRST_WINDOW = (0.1, 0.5)
#: Where every later SVID rotates: never after half-life, the latest SPIRE's agent waits on average.
STEADY_WINDOW = (0.4, 0.5)


def rotation_at(
    received: datetime, not_after: datetime, rng: random.Random, *, first: bool = False
) -> datetime:
    """When an SVID received at ``received`` and expiring at ``not_after`` should be replaced.

    ``first``: the holder had no valid SVID before this one, so it may have arrived in a burst.
    """
    lifetime = not_after - received
    if lifetime <= timedelta(0):
        return received
    low, high = FIRST_WINDOW if first else STEADY_WINDOW
    return received + lifetime * rng.uniform(low, high)


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
