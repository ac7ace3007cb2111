"""``Authorization/Check`` over gRPC, as Envoy calls it: decisions, their explanation, and every fail-closed case."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from enforcer.policy_docs import ap, dump, rule, spiffe
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest, CheckResponse
from google.protobuf import json_format  # type: ignore[import-untyped]
from grpclib.client import Channel, UnaryUnaryMethod
from grpclib.server import Server
from prometheus_client import CollectorRegistry, generate_latest
from sigil_testing.pki import Domain

from sigil.ca.spiffe_id import TrustDomain
from sigil.enforcer.authorizer import Authorizer
from sigil.enforcer.extauthz.service import CHECK_PATH, AuthorizationService
from sigil.enforcer.metrics import EnforcerMetrics
from sigil.enforcer.policy import Target

PERMISSION_DENIED = 7
API = Target("shop", {"app": "api"})


class Harness:
    """An in-process Check server for the pod ``shop/api`` and a client of it."""

    def __init__(self, channel: Channel, registry: CollectorRegistry) -> None:
        self._check = UnaryUnaryMethod(channel, CHECK_PATH, CheckRequest, CheckResponse)
        self.registry = registry
        self.ready = True

    async def check(self, attributes: Mapping[str, Any]) -> CheckResponse:
        request = json_format.ParseDict({"attributes": attributes}, CheckRequest())
        response: CheckResponse = await self._check(request)
        return response

    def exposition(self) -> str:
        return generate_latest(self.registry).decode()


@pytest.fixture
async def harness(
    short_tmp: Path, write_policies: Callable[[Mapping[str, str]], Path]
) -> AsyncIterator[Harness]:
    """The server over a directory allowing ``web`` on 8443 (a dry-run policy would deny ``batch`` there)."""
    policies = write_policies(
        {
            "p.yaml": dump(
                ap("web", rules=[rule([spiffe("spiffe://example.org/web")], ports=[8443])]),
                ap(
                    "no-batch",
                    action="DENY",
                    rules=[rule([spiffe("spiffe://example.org/batch")])],
                    dry_run=True,
                ),
                ap("batch-too", rules=[rule([spiffe("spiffe://example.org/batch")])]),
                ap(
                    "ops-from-the-office",
                    rules=[
                        {
                            "sources": [spiffe("spiffe://example.org/ops")],
                            "networkAttributes": {"ports": [9000], "sourceCIDRs": ["10.0.0.0/24"]},
                        }
                    ],
                ),
            )
        }
    )
    registry = CollectorRegistry()
    authorizer = Authorizer(
        trust_domain=TrustDomain("example.org"),
        target=API,
        policies=policies,
        metrics=EnforcerMetrics(registry),
    )
    authorizer.load()
    socket = short_tmp / "authz.sock"
    harness: Harness
    service = AuthorizationService(
        authorizer,
        trust_domains=frozenset({TrustDomain("example.org"), TrustDomain("partner.org")}),
        ready=lambda: harness.ready,
    )
    server = Server([service])
    await server.start(path=str(socket))
    channel = Channel(path=str(socket))
    harness = Harness(channel, registry)
    try:
        yield harness
    finally:
        channel.close()
        server.close()
        await server.wait_closed()


def tcp(principal: str = "", *, port: int = 8443, certificate: str = "") -> dict[str, Any]:
    """Attributes as the network filter sends them."""
    return {
        "source": {
            "address": {"socket_address": {"address": "10.0.0.7", "port_value": 40000}},
            "principal": principal,
            "certificate": certificate,
        },
        "destination": {"address": {"socket_address": {"address": "10.0.0.9", "port_value": port}}},
    }


def http(principal: str = "", *, port: int = 8443) -> dict[str, Any]:
    """Attributes as the HTTP filter sends them."""
    return {**tcp(principal, port=port), "request": {"http": {"method": "GET", "path": "/"}}}


def metadata(response: CheckResponse) -> dict[str, Any]:
    result: dict[str, Any] = json_format.MessageToDict(response.dynamic_metadata)
    return result


def headers(response: CheckResponse) -> dict[str, str]:
    return {h.header.key: h.header.value for h in response.denied_response.headers}


async def test_an_allowed_peer_gets_ok_with_the_rule_that_allowed_it(harness: Harness) -> None:
    """A peer a rule allows gets status OK, and the metadata names the policy and rule."""
    response = await harness.check(tcp("spiffe://example.org/web"))
    assert response.status.code == 0
    explained = metadata(response)
    assert (explained["decision"], explained["tier"], explained["policy"], explained["rule"]) == (
        "allowed",
        "namespace",
        "shop/web",
        0.0,
    )


@pytest.mark.parametrize(
    ("source", "allowed"),
    [
        ({"socket_address": {"address": "10.0.0.7", "port_value": 40000}}, True),
        ({"socket_address": {"address": "192.0.2.7", "port_value": 40000}}, False),
        ({"pipe": {"path": "/run/envoy.sock"}}, False),
    ],
)
async def test_the_source_address_envoy_sends_is_what_source_cidrs_judge(
    harness: Harness, source: dict[str, Any], allowed: bool
) -> None:
    """A rule limited to ``sourceCIDRs`` allows its peer from inside the block only; no IP (a pipe) matches no
    rule that names networks."""
    attributes = tcp("spiffe://example.org/ops", port=9000)
    attributes["source"]["address"] = source
    response = await harness.check(attributes)
    assert (response.status.code == 0) is allowed


async def test_a_denied_http_request_gets_a_403_explaining_who_denied_it(harness: Harness) -> None:
    """An HTTP request from a peer no rule allows gets PERMISSION_DENIED and a 403 whose headers and body
    name the tier and policy that decided."""
    response = await harness.check(http("spiffe://example.org/web", port=9000))
    assert response.status.code == PERMISSION_DENIED
    assert "namespace tier" in response.status.message
    assert response.denied_response.status.code == 403
    assert headers(response)["x-sigil-decision"] == "denied"
    assert headers(response)["x-sigil-tier"] == "namespace"
    body = json.loads(response.denied_response.body)
    assert body["decision"] == "denied"
    assert body["tier"] == "namespace"


async def test_a_denied_tcp_connection_carries_the_explanation_in_status_and_metadata(
    harness: Harness,
) -> None:
    """The network filter has no HTTP response to fill: the denial is the status, explained in metadata."""
    response = await harness.check(tcp("spiffe://example.org/intruder"))
    assert response.status.code == PERMISSION_DENIED
    assert not response.HasField("denied_response")
    assert metadata(response)["decision"] == "denied"
    assert metadata(response)["tier"] == "namespace"


async def test_the_peer_certificate_names_the_peer_when_no_principal_is_sent(
    harness: Harness, home: Domain
) -> None:
    """With include_peer_certificate, the URL-encoded leaf's URI SAN is the peer."""
    leaf = home.mint("web").chain_pem().decode().split("-----END CERTIFICATE-----")[0]
    pem = leaf + "-----END CERTIFICATE-----\n"
    response = await harness.check(tcp(certificate=urllib.parse.quote(pem, safe="")))
    assert response.status.code == 0
    assert metadata(response)["policy"] == "shop/web"


@pytest.mark.parametrize(
    ("principal", "why"),
    [("", "no client certificate"), ("CN=web,O=Example", "no SPIFFE ID")],
    ids=["plaintext", "subject-only"],
)
async def test_a_peer_without_a_spiffe_id_is_decided_as_no_svid(
    harness: Harness, principal: str, why: str
) -> None:
    """No principal (plaintext), or a subject name where Envoy found no URI SAN, matches no identity source:
    the ALLOW policy denies it, and the answer says why there was no peer."""
    response = await harness.check(tcp(principal))
    assert response.status.code == PERMISSION_DENIED
    explained = metadata(response)
    assert (explained["tier"], explained["peer"], explained["anonymous"]) == (
        "namespace",
        None,
        why,
    )


async def test_a_dry_run_verdict_is_reported_without_changing_the_decision(
    harness: Harness,
) -> None:
    """A dry-run DENY that matches leaves the request allowed and says it would have been denied."""
    response = await harness.check(http("spiffe://example.org/batch"))
    assert response.status.code == 0
    assert metadata(response)["dry_run"]["decision"] == "denied"
    added = {h.header.key: h.header.value for h in response.ok_response.response_headers_to_add}
    assert added["x-sigil-dry-run"].startswith("denied;")


@pytest.mark.parametrize(
    ("attributes", "named"),
    [
        ({}, "attributes"),
        (tcp("spiffe://example.org/web", port=0), "destination.address"),
        (tcp(certificate="not%20a%20certificate"), "source.certificate"),
    ],
    ids=["no-attributes", "no-destination-port", "certificate-not-pem"],
)
async def test_a_malformed_request_is_denied_with_the_reason(
    harness: Harness, attributes: dict[str, Any], named: str
) -> None:
    """A request that cannot be read is denied (never allowed) and the answer names what was wrong."""
    response = await harness.check(attributes) if attributes else await _empty(harness)
    assert response.status.code == PERMISSION_DENIED
    assert metadata(response)["refusal"] == "malformed_request"
    assert named in response.status.message
    assert (
        'sigil_enforcer_peer_refusals_total{reason="malformed_request"} 1.0' in harness.exposition()
    )


async def _empty(harness: Harness) -> CheckResponse:
    return await harness._check(CheckRequest())


async def test_a_principal_contradicting_the_certificate_is_denied(
    harness: Harness, home: Domain
) -> None:
    """When the principal and the certificate name different peers, the request is malformed."""
    pem = home.mint("batch").chain_pem().decode()
    pem = pem[: pem.index("-----END CERTIFICATE-----")] + "-----END CERTIFICATE-----\n"
    response = await harness.check(
        tcp("spiffe://example.org/web", certificate=urllib.parse.quote(pem))
    )
    assert response.status.code == PERMISSION_DENIED
    assert metadata(response)["refusal"] == "malformed_request"


async def test_a_peer_of_an_unknown_trust_domain_is_denied(harness: Harness) -> None:
    """A SPIFFE ID of a domain neither local nor federated is denied before any policy runs."""
    response = await harness.check(tcp("spiffe://elsewhere.org/web"))
    assert response.status.code == PERMISSION_DENIED
    assert metadata(response)["refusal"] == "unknown_trust_domain"
    assert "elsewhere.org" in response.status.message


async def test_a_federated_peer_is_decided_by_policy(harness: Harness) -> None:
    """A peer of a named federated domain reaches the policies (which here do not allow it)."""
    response = await harness.check(tcp("spiffe://partner.org/web"))
    assert response.status.code == PERMISSION_DENIED
    assert metadata(response)["tier"] == "namespace"


async def test_every_call_is_denied_until_a_policy_set_is_in_force(harness: Harness) -> None:
    """Before the first policy set is loaded, even a peer the policies would allow is denied, saying why."""
    harness.ready = False
    response = await harness.check(http("spiffe://example.org/web"))
    assert response.status.code == PERMISSION_DENIED
    assert response.denied_response.status.code == 403
    assert headers(response)["x-sigil-refusal"] == "no_policy"
