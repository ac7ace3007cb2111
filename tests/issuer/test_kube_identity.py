"""SPIFFE IDs derived from a Kubernetes identity, and the settings that shape them, checked at configuration time."""

from __future__ import annotations

import pytest

from sigil.ca.reserved_ids import k8s_agent_id
from sigil.ca.spiffe_id import TrustDomain
from sigil.issuer.errors import ConfigError, NotEntitledError
from sigil.issuer.kube import KubeIdentity, ServiceAccountRef, WorkloadIdTemplate

TD = TrustDomain("example.org")
POD = KubeIdentity("shop", "frontend", "web-1", "1234-abcd", "node-a", "9876")


def test_custom_template_renders_the_pod_fields() -> None:
    """A template may use any identity field, for example a per-pod ID."""
    template = WorkloadIdTemplate("k8s/{namespace}/{service_account}/{pod_uid}")
    assert str(template.render(TD, POD)) == "spiffe://example.org/k8s/shop/frontend/1234-abcd"


def test_a_rendered_id_is_the_same_however_often_it_is_asked() -> None:
    """Rendering is remembered per identity: the same pod gets the same ID, another pod its own, a refusal stays."""
    template = WorkloadIdTemplate("ns/{namespace}/sa/{service_account}")
    first = template.render(TD, POD)
    assert template.render(TD, POD) == first
    other = KubeIdentity("shop", "backend", "api-1", "5678-efgh", "node-a", "9876")
    assert str(template.render(TD, other)) == "spiffe://example.org/ns/shop/sa/backend"
    reserved = WorkloadIdTemplate("{namespace}/{service_account}")
    agentish = KubeIdentity("sigil", "agent", "a-1", "1", "node-a", "9876")
    for _ in range(2):
        with pytest.raises(NotEntitledError):
            reserved.render(TD, agentish)


@pytest.mark.parametrize(
    "template",
    [
        "ns/{namespace}/sa/{secret}",  # unknown field
        "ns/{namespace.__class__}",  # attribute access
        "ns/{namespace!r}",  # conversion
        "ns/{namespace:>10}",  # format spec
        "static/id",  # no field: every workload would share it
        "ns/{namespace}/",  # trailing slash
        "ns//{namespace}",  # empty segment
        "ns/{namespace",  # unbalanced brace
        "/ns/{namespace}",  # leading slash gives an empty segment
    ],
)
def test_bad_templates_are_refused_at_configuration(template: str) -> None:
    """A template that could produce a wrong or unreviewed ID stops the configuration from loading."""
    with pytest.raises(ConfigError):
        WorkloadIdTemplate(template)


def test_service_account_refs_parse_namespace_and_name() -> None:
    """Allow-list entries are NAMESPACE:NAME and nothing else."""
    assert ServiceAccountRef.parse("sigil-system:sigil-agent") == ServiceAccountRef(
        "sigil-system", "sigil-agent"
    )
    for bad in ("sigil-agent", "Sigil:agent", ":agent", "ns:"):
        with pytest.raises(ConfigError):
            ServiceAccountRef.parse(bad)


def test_agent_id_is_per_cluster_and_node() -> None:
    """The agent ID is spiffe://TD/sigil/agent/k8s/CLUSTER/NODE."""
    assert (
        str(k8s_agent_id(TD, cluster="eu-1", node_name="node-a"))
        == "spiffe://example.org/sigil/agent/k8s/eu-1/node-a"
    )
