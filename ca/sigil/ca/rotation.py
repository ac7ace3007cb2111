"""When to prepare and activate authorities: SPIRE's schedule, as a pure function of state and time.

SPIRE (pkg/server/ca/manager) prepares the next authority once the active one is past half its life (at most 30
days before it ends) and activates it at five sixths (at most 7 days before the end). With the default 24 h
authority that is a new key at 12 h, used from 20 h, and an SVID TTL of up to 4 h always fits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sigil.ca.authority import Authority, AuthorityKind, AuthorityStatus

__all__ = ["Activate", "Prepare", "Step", "activation_time", "plan_rotation", "preparation_time"]

_MAX_PREPARE_LEAD = timedelta(days=30)
_MAX_ACTIVATE_LEAD = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class Prepare:
    kind: AuthorityKind


@dataclass(frozen=True, slots=True)
class Activate:
    kind: AuthorityKind
    authority_id: str


Step = Prepare | Activate


def preparation_time(active: Authority) -> datetime:
    return active.not_after - min(active.lifetime / 2, _MAX_PREPARE_LEAD)


def activation_time(active: Authority) -> datetime:
    return active.not_after - min(active.lifetime / 6, _MAX_ACTIVATE_LEAD)


def plan_rotation(
    kind: AuthorityKind, authorities: Sequence[Authority], now: datetime
) -> list[Step]:
    """The steps due now for the authorities of ``kind`` (possibly none)."""
    mine = [a for a in authorities if a.kind is kind]
    active = next(
        (a for a in mine if a.status is AuthorityStatus.ACTIVE and a.not_after > now), None
    )
    prepared = next(
        (a for a in mine if a.status is AuthorityStatus.PREPARED and a.not_after > now), None
    )
    if active is None:
        # First start, or the active one ran out while nobody rotated: sign with something valid at once.
        if prepared is not None:
            return [Activate(kind, prepared.authority_id)]
        return [Prepare(kind), Activate(kind, "")]
    steps: list[Step] = []
    if prepared is None and now >= preparation_time(active):
        steps.append(Prepare(kind))
        prepared_id = ""
    else:
        prepared_id = prepared.authority_id if prepared is not None else ""
    if now >= activation_time(active) and (prepared is not None or steps):
        steps.append(Activate(kind, prepared_id))
    return steps
