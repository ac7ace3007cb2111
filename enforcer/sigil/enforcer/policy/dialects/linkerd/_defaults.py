"""Linkerd's default inbound policies in Sigil's terms: the cluster default, namespace annotations, ``accessPolicy``.

Linkerd names six (``proxy.defaultInboundPolicy``; linkerd2 ``policy-controller/k8s/index/src/defaults.rs``):
``all-unauthenticated`` and ``all-authenticated`` admit every client or every meshed one from any address,
``cluster-unauthenticated`` and ``cluster-authenticated`` the same from the cluster's networks only, ``deny``
nobody, and ``audit`` everybody while recording what ``deny`` would refuse. The cluster default becomes
Sigil's ``--default``; a namespace's annotation becomes a Baseline ``ClusterAuthorizationPolicy`` for that
namespace (consulted only where no ``Server`` selected the port, exactly where Linkerd consults the default);
a ``Server``'s ``accessPolicy`` becomes rules of that Server's policy.
"""

from __future__ import annotations

from typing import Any

from sigil.enforcer.policy.defaults import DefaultPolicy
from sigil.enforcer.policy.dialects.base import Exactness
from sigil.enforcer.policy.dialects.linkerd._authn import (
    CLUSTER_NETWORKS,
    Client,
    Network,
    client_rules,
)

__all__ = ["DEFAULT_POLICIES", "default_client", "default_note", "default_rules", "sigil_default"]

DEFAULT_POLICIES = (
    "all-unauthenticated",
    "all-authenticated",
    "cluster-unauthenticated",
    "cluster-authenticated",
    "deny",
    "audit",
)
"""Linkerd's default inbound policy names."""

_CLUSTER = tuple(Network(cidr) for cidr in CLUSTER_NETWORKS)
_CLIENTS = {
    "all-unauthenticated": Client(None, None),
    "all-authenticated": Client(({"type": "Authenticated"},), None),
    "cluster-unauthenticated": Client(None, _CLUSTER),
    "cluster-authenticated": Client(({"type": "Authenticated"},), _CLUSTER),
    "audit": Client(None, None),
}


def default_client(name: str) -> Client | None:
    """Who the default ``name`` admits (None for ``deny``); ValueError naming the known ones otherwise."""
    if name not in DEFAULT_POLICIES:
        raise ValueError(
            f"unknown Linkerd default inbound policy {name!r}: expected one of {', '.join(DEFAULT_POLICIES)}"
        )
    return _CLIENTS.get(name)


def default_note(name: str) -> tuple[Exactness, str] | None:
    """How faithfully :func:`default_rules` express ``name``: None when exactly, else the exactness and why."""
    if name.startswith("cluster-"):
        return Exactness.APPROXIMATE, (
            f"{name} admits clients from the cluster's networks, taken to be Linkerd's default "
            f"clusterNetworks ({', '.join(CLUSTER_NETWORKS)}); edit sourceCIDRs if the install sets others"
        )
    if name == "audit":
        return Exactness.APPROXIMATE, (
            "audit allows every client and records what deny would refuse; Sigil allows them here "
            "without that record (Sigil's audit exists only as the cluster-wide --default audit)"
        )
    return None


def default_rules(name: str, *, action: str | None = None) -> list[dict[str, Any]]:
    """Sigil rules admitting what the default ``name`` admits (none for ``deny``)."""
    client = default_client(name)
    return [] if client is None else client_rules(client, action=action)


def sigil_default(name: str) -> tuple[DefaultPolicy, Exactness, str]:
    """Sigil's ``--default`` for Linkerd's cluster-wide ``proxy.defaultInboundPolicy`` ``name``.

    Returns the default, how faithfully it says the same, and a sentence for the report. Linkerd's
    ``cluster-*`` defaults also restrict the client's address, which a cluster-wide Sigil default cannot:
    ``cluster-authenticated`` becomes ``local-authenticated`` (meshed clients of the local trust domain, from
    any address), and ``cluster-unauthenticated`` has no Sigil default and becomes ``allow``.
    """
    default_client(name)  # validates the name
    table = {
        "all-unauthenticated": (DefaultPolicy.ALLOW, Exactness.EXACT, "every client is allowed"),
        "all-authenticated": (
            DefaultPolicy.AUTHENTICATED,
            Exactness.EXACT,
            "every client with a verified identity (SVID) is allowed",
        ),
        "cluster-authenticated": (
            DefaultPolicy.LOCAL_AUTHENTICATED,
            Exactness.APPROXIMATE,
            "clients of the local trust domain are allowed from any address, not only the cluster networks",
        ),
        "cluster-unauthenticated": (
            DefaultPolicy.ALLOW,
            Exactness.APPROXIMATE,
            "every client is allowed from any address, not only the cluster networks",
        ),
        "deny": (DefaultPolicy.DENY, Exactness.EXACT, "every client is denied"),
        "audit": (
            DefaultPolicy.AUDIT,
            Exactness.EXACT,
            "every client is allowed, and what deny would refuse is recorded",
        ),
    }
    return table[name]
