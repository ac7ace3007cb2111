"""The JSON documents the admin verbs answer with for authorities, shared by ``authority`` and ``upstream``."""

from __future__ import annotations

from typing import Any

from sigil.ca.authority import Authority
from sigil.ca.datastore.journal import Outstanding

__all__ = ["authority_json", "outstanding_json"]

Json = dict[str, Any]


def authority_json(authority: Authority) -> Json:
    return {
        "kind": authority.kind.value,
        "authority_id": authority.authority_id,
        "status": authority.status.value,
        "tainted": authority.tainted,
        "not_before": authority.not_before.isoformat(),
        "not_after": authority.not_after.isoformat(),
    }


def outstanding_json(left: Outstanding) -> Json:
    """What revoking the authority now would cut, as ``authority show`` and a forced revoke report it."""
    return {
        "remaining": left.count,
        "holders": dict(sorted(left.holders.items())),
        "last_expiry": left.last_expiry.isoformat() if left.last_expiry else None,
        "summary": left.describe(),
    }
