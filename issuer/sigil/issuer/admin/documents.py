"""The JSON documents the admin verbs answer with: authorities (shared by ``authority`` and ``upstream``),
registration entries and attested agents."""

from __future__ import annotations

from typing import Any

from sigil.ca.authority import Authority
from sigil.ca.datastore.journal import Outstanding
from sigil.issuer.datastore.agentrecords import AttestedAgent
from sigil.issuer.datastore.registry import Entry

__all__ = ["agent_json", "authority_json", "entry_json", "outstanding_json"]

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


def entry_json(entry: Entry) -> Json:
    return {
        "entry_id": entry.entry_id,
        "spiffe_id": str(entry.spiffe_id),
        "parent_id": str(entry.parent_id),
        "selectors": sorted(entry.selectors),
        "x509_svid_ttl": entry.x509_svid_ttl.total_seconds() if entry.x509_svid_ttl else None,
        "jwt_svid_ttl": entry.jwt_svid_ttl.total_seconds() if entry.jwt_svid_ttl else None,
        "dns_names": list(entry.dns_names),
    }


def agent_json(agent: AttestedAgent) -> Json:
    return {
        "agent_id": agent.agent_id,
        "method": agent.method,
        "serial": agent.serial,
        "new_serial": agent.new_serial,
        "node_uid": agent.node_uid,
        "banned": agent.banned,
        "attested_at": agent.attested_at.isoformat(),
        "expires_at": agent.expires_at.isoformat(),
    }
