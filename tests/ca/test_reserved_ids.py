"""Sigil's own SPIFFE IDs: built, recognised and read back in one place."""

from __future__ import annotations

import pytest

from sigil.ca.reserved_ids import (
    is_agent_id,
    join_agent_id,
    k8s_agent_id,
    k8s_agent_node,
    reserved_path,
    server_id,
)
from sigil.ca.spiffe_id import SpiffeId, TrustDomain

TD = TrustDomain("example.org")


def test_the_ids_spell_the_documented_paths() -> None:
    """The server, a Kubernetes agent and a join-token agent get the paths the README names."""
    assert str(server_id(TD)) == "spiffe://example.org/sigil/server"
    assert str(k8s_agent_id(TD, cluster="eu-1", node_name="node-a")) == (
        "spiffe://example.org/sigil/agent/k8s/eu-1/node-a"
    )
    assert str(join_agent_id(TD, "ab12")) == "spiffe://example.org/sigil/agent/join/ab12"


def test_the_node_is_read_back_only_from_a_kubernetes_agent_id() -> None:
    """A Kubernetes agent's ID gives its cluster and node; any other ID gives None."""
    assert k8s_agent_node(k8s_agent_id(TD, cluster="eu-1", node_name="node-a")) == (
        "eu-1",
        "node-a",
    )
    for other in (
        join_agent_id(TD, "ab12"),
        server_id(TD),
        SpiffeId.parse("spiffe://example.org/sigil/agent/k8s/eu-1"),
        SpiffeId.parse("spiffe://example.org/sigil/agent/k8s/eu-1/node-a/extra"),
        SpiffeId.parse("spiffe://example.org/ns/sigil/agent/k8s/eu-1/node-a"),
    ):
        assert k8s_agent_node(other) is None, other


@pytest.mark.parametrize(
    ("path", "reserved", "agent"),
    [
        ("/sigil/server", "/sigil/server", False),
        ("/sigil/server/x", "/sigil/server", False),
        ("/sigil/agent", "/sigil/agent", False),
        ("/sigil/agent/join/ab12", "/sigil/agent", True),
        ("/sigil/agents", None, False),
        ("/sigil", None, False),
        ("/ns/default/sa/sigil", None, False),
    ],
)
def test_reserved_paths_cover_the_prefix_and_everything_under_it(
    path: str, reserved: str | None, agent: bool
) -> None:
    """An ID is reserved when its path is a reserved prefix or under it, never when it merely starts alike."""
    spiffe_id = SpiffeId.parse(f"spiffe://example.org{path}")
    assert (reserved_path(spiffe_id), is_agent_id(spiffe_id)) == (reserved, agent)
