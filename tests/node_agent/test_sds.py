"""Envoy's SDS on the agent socket as a gRPC client sees it: each resource name, the statuses, and the xDS protocol.

A grpclib client speaks the exact method paths and messages Envoy does (``xds-protos``); the real Envoy is in
``tests/integration/test_envoy_sds.py``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_spiffe_validator_config_pb2
from envoy.service.discovery.v3 import discovery_pb2
from envoy.type.v3 import semantic_version_pb2
from google.rpc import status_pb2
from grpclib.client import Channel, Stream
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError
from sigil_testing.pki import Domain

from sigil.ca.spiffe_id import TrustDomain
from sigil.node_agent.attestation.peer import PeerCredentials
from sigil.node_agent.attestation.selectors import Selector, WorkloadAttestation
from sigil.node_agent.errors import AttestationError
from sigil.node_agent.memory_source import InMemoryIdentitySource
from sigil.node_agent.workload_api.endpoint import WorkloadApiServer, WorkloadApiSettings
from sigil.node_agent.workload_api.sds_secrets import SECRET_TYPE_URL, SPIFFE_VALIDATOR

from .conftest import FEDERATED, TRUST_DOMAIN, WORKLOAD_ID, my_uid, trust_bundles, workload_svid

_PATH = "/envoy.service.secret.v3.SecretDiscoveryService/"
_Request = discovery_pb2.DiscoveryRequest
_Response = discovery_pb2.DiscoveryResponse
SECOND_ID = TRUST_DOMAIN.spiffe_id("ns", "default", "sa", "worker")


def _node(major: int = 1, minor: int = 40) -> Any:
    version = semantic_version_pb2.SemanticVersion(major_number=major, minor_number=minor)
    return base_pb2.Node(
        id="sidecar",
        cluster="web",
        user_agent_name="envoy",
        user_agent_build_version=base_pb2.BuildVersion(version=version),
    )


def _request(*names: str, node: Any = None, **fields: Any) -> Any:
    fields.setdefault("type_url", SECRET_TYPE_URL)
    return _Request(
        resource_names=list(names), node=node if node is not None else _node(), **fields
    )


def _secrets(response: Any) -> dict[str, Any]:
    out = {}
    for resource in response.resources:
        secret = secret_pb2.Secret()
        assert resource.Unpack(secret)
        out[secret.name] = secret
    return out


def _leaf(secret: Any) -> x509.Certificate:
    return x509.load_pem_x509_certificates(secret.tls_certificate.certificate_chain.inline_bytes)[0]


def _uri(cert: x509.Certificate) -> str:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return str(san.get_values_for_type(x509.UniformResourceIdentifier)[0])


def _trust_domains(secret: Any) -> dict[str, bytes]:
    context = secret.validation_context
    assert context.custom_validator_config.name == SPIFFE_VALIDATOR
    config = tls_spiffe_validator_config_pb2.SPIFFECertValidatorConfig()
    assert context.custom_validator_config.typed_config.Unpack(config)
    return {td.name: td.trust_bundle.inline_bytes for td in config.trust_domains}


@pytest.fixture
async def channel(server: WorkloadApiServer) -> AsyncIterator[Channel]:
    connection = Channel(path=str(server.settings.socket_path))
    try:
        yield connection
    finally:
        connection.close()


async def _fetch(channel: Channel, request: Any) -> Any:
    method = channel.request(_PATH + "FetchSecrets", Cardinality.UNARY_UNARY, _Request, _Response)
    async with method as stream:
        await stream.send_message(request, end=True)
        return await asyncio.wait_for(stream.recv_message(), 10)


async def _status(channel: Channel, request: Any) -> tuple[Status, str]:
    with pytest.raises(GRPCError) as caught:
        await _fetch(channel, request)
    return caught.value.status, caught.value.message or ""


async def _recv(stream: Stream[Any, Any]) -> Any:
    return await asyncio.wait_for(stream.recv_message(), 10)


# ------------------------------------------------------------------------------------------- resource names


async def test_default_is_the_callers_svid_with_its_key(channel: Channel) -> None:
    """``default`` is the caller's X509-SVID as a TLS certificate whose key matches the leaf, sent without header."""
    response = await _fetch(channel, _request("default"))
    assert response.type_url == SECRET_TYPE_URL
    secret = _secrets(response)["default"]
    leaf = _leaf(secret)
    assert _uri(leaf) == str(WORKLOAD_ID)
    key = serialization.load_pem_private_key(
        secret.tls_certificate.private_key.inline_bytes, password=None
    )
    assert key.public_key() == leaf.public_key()


async def test_each_spiffe_id_the_caller_holds_is_a_resource(
    channel: Channel, source: InMemoryIdentitySource, ca: Domain
) -> None:
    """A second identity is served under its own SPIFFE ID, and ``default`` stays the first one."""
    source.put(workload_svid(ca, SECOND_ID), selectors=[my_uid()])
    secrets = _secrets(await _fetch(channel, _request(str(SECOND_ID), "default")))
    assert _uri(_leaf(secrets[str(SECOND_ID)])) == str(SECOND_ID)
    assert _uri(_leaf(secrets["default"])) == str(WORKLOAD_ID)


async def test_rootca_is_the_own_bundle_in_a_spiffe_validator(channel: Channel, ca: Domain) -> None:
    """``ROOTCA`` is the own trust domain's bundle, as Envoy's SPIFFE validator with one trust domain."""
    secret = _secrets(await _fetch(channel, _request("ROOTCA")))["ROOTCA"]
    assert _trust_domains(secret) == {TRUST_DOMAIN.name: ca.bundle.to_pem()}


async def test_an_old_envoy_gets_rootca_as_trusted_ca(channel: Channel, ca: Domain) -> None:
    """An Envoy older than 1.18 (no SPIFFE validator) gets the bundle as a plain ``trusted_ca``."""
    response = await _fetch(channel, _request("ROOTCA", node=_node(1, 17)))
    context = _secrets(response)["ROOTCA"].validation_context
    assert context.trusted_ca.inline_bytes == ca.bundle.to_pem()
    assert not context.HasField("custom_validator_config")


async def test_all_is_own_and_federated_bundles(
    channel: Channel, ca: Domain, partner_ca: Domain
) -> None:
    """``ALL`` carries the own and the federated trust domain, one validator entry each."""
    secret = _secrets(await _fetch(channel, _request("ALL")))["ALL"]
    assert _trust_domains(secret) == {
        TRUST_DOMAIN.name: ca.bundle.to_pem(),
        FEDERATED.name: partner_ca.bundle.to_pem(),
    }


async def test_one_trust_domain_by_its_spiffe_name(channel: Channel, partner_ca: Domain) -> None:
    """``spiffe://partner.test`` is that federated trust domain's bundle alone."""
    name = str(FEDERATED.id)
    secret = _secrets(await _fetch(channel, _request(name)))[name]
    assert _trust_domains(secret) == {FEDERATED.name: partner_ca.bundle.to_pem()}


async def test_no_name_means_every_bundle_and_svid(channel: Channel) -> None:
    """A request naming nothing gets every bundle under ``spiffe://TD`` and every SVID under its SPIFFE ID."""
    secrets = _secrets(await _fetch(channel, _request()))
    assert set(secrets) == {str(TRUST_DOMAIN.id), str(FEDERATED.id), str(WORKLOAD_ID)}


# -------------------------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "name", ["nonsense", "spiffe://stranger.test", "spiffe://example.org/ns/default/sa/other"]
)
async def test_a_name_the_caller_holds_nothing_under_is_denied(channel: Channel, name: str) -> None:
    """An unknown name, a foreign trust domain or another workload's ID is PermissionDenied naming it."""
    status, message = await _status(channel, _request("default", name))
    assert status is Status.PERMISSION_DENIED
    assert name in message


async def test_a_caller_without_identity_is_denied(
    channel: Channel, source: InMemoryIdentitySource
) -> None:
    """A caller attested but entitled to nothing gets PermissionDenied "no identity issued", as on the Workload API."""
    source.remove(WORKLOAD_ID)
    source.put(
        workload_svid(Domain(TRUST_DOMAIN, now=None), SECOND_ID),
        selectors=[Selector("unix", f"uid:{os.getuid() + 1}")],
    )
    assert await _status(channel, _request("ROOTCA")) == (
        Status.PERMISSION_DENIED,
        "no identity issued",
    )


class _RefusingAttestor:
    """Attests nobody, as when a caller's pod is unknown to this node."""

    async def attest(self, peer: PeerCredentials) -> WorkloadAttestation:
        raise AttestationError(peer.pid, "no pod of this node holds the caller")


async def test_an_unattested_caller_is_denied_as_on_the_workload_api(
    settings: WorkloadApiSettings, source: InMemoryIdentitySource
) -> None:
    """A caller that fails attestation gets PermissionDenied with the reason, on SDS as on the Workload API."""
    async with WorkloadApiServer(settings, source=source, attestor=_RefusingAttestor()):
        connection = Channel(path=str(settings.socket_path))
        try:
            status, message = await _status(connection, _request("default"))
        finally:
            connection.close()
    assert status is Status.PERMISSION_DENIED
    assert "no pod of this node holds the caller" in message


async def test_all_without_the_spiffe_validator_is_invalid(channel: Channel) -> None:
    """``ALL`` asked by an Envoy without the SPIFFE validator is InvalidArgument, saying why."""
    status, message = await _status(channel, _request("ALL", node=_node(1, 16)))
    assert status is Status.INVALID_ARGUMENT
    assert "1.18" in message


async def test_another_resource_type_is_invalid(channel: Channel) -> None:
    """A request for clusters on the secret service is InvalidArgument."""
    request = _request("default", type_url="type.googleapis.com/envoy.config.cluster.v3.Cluster")
    status, _ = await _status(channel, request)
    assert status is Status.INVALID_ARGUMENT


async def test_delta_secrets_is_unimplemented(channel: Channel) -> None:
    """DeltaSecrets is not served; Envoy falls back to StreamSecrets."""
    method = channel.request(
        _PATH + "DeltaSecrets",
        Cardinality.STREAM_STREAM,
        discovery_pb2.DeltaDiscoveryRequest,
        discovery_pb2.DeltaDiscoveryResponse,
    )

    async def call() -> None:
        async with method as stream:
            await stream.send_message(discovery_pb2.DeltaDiscoveryRequest(), end=True)
            await _recv(stream)

    with pytest.raises(GRPCError) as caught:
        await call()
    assert caught.value.status is Status.UNIMPLEMENTED


# ---------------------------------------------------------------------------------------- the xDS protocol


def _stream(channel: Channel) -> Any:
    return channel.request(_PATH + "StreamSecrets", Cardinality.STREAM_STREAM, _Request, _Response)


def _ack(response: Any, *names: str, **fields: Any) -> Any:
    return _request(
        *names, version_info=response.version_info, response_nonce=response.nonce, **fields
    )


async def test_an_ack_is_not_answered(channel: Channel) -> None:
    """After an ACK the next response is the answer to the next change of names, not a resend."""
    async with _stream(channel) as stream:
        await stream.send_message(_request("default"))
        first = await _recv(stream)
        assert first.version_info == "1"
        assert first.nonce
        await stream.send_message(_ack(first, "default"))
        # Requests are handled in order: had the ACK been answered, that answer would come first.
        await stream.send_message(_ack(first, "default", "ROOTCA"))
        second = await _recv(stream)
        assert second.version_info == "2"
        assert second.nonce != first.nonce
        assert set(_secrets(second)) == {"default", "ROOTCA"}
        await stream.end()


async def test_a_rotation_is_pushed_as_the_next_version(
    channel: Channel, source: InMemoryIdentitySource, ca: Domain
) -> None:
    """A rotated SVID reaches the open stream as the next version, carrying the new serial."""
    async with _stream(channel) as stream:
        await stream.send_message(_request("default"))
        first = await _recv(stream)
        await stream.send_message(_ack(first, "default"))
        source.put(workload_svid(ca, WORKLOAD_ID), selectors=[my_uid()])
        second = await _recv(stream)
        assert second.version_info == "2"
        old = _leaf(_secrets(first)["default"]).serial_number
        assert _leaf(_secrets(second)["default"]).serial_number != old
        await stream.end()


async def test_a_bundle_change_is_pushed(
    channel: Channel, source: InMemoryIdentitySource, partner_ca: Domain
) -> None:
    """New authorities of the own trust domain reach a ROOTCA stream."""
    async with _stream(channel) as stream:
        await stream.send_message(_request("ROOTCA"))
        first = await _recv(stream)
        await stream.send_message(_ack(first, "ROOTCA"))
        fresh = Domain(TRUST_DOMAIN, now=None)
        source.set_bundles(trust_bundles(fresh, partner_ca))
        second = await _recv(stream)
        assert second.version_info == "2"
        assert _trust_domains(_secrets(second)["ROOTCA"]) == {
            TRUST_DOMAIN.name: fresh.bundle.to_pem()
        }
        await stream.end()


async def test_a_change_that_does_not_touch_the_resources_sends_nothing(
    channel: Channel, source: InMemoryIdentitySource, ca: Domain
) -> None:
    """A new identity the stream did not ask for is no new version; the next response answers new names."""
    async with _stream(channel) as stream:
        await stream.send_message(_request("ROOTCA"))
        first = await _recv(stream)
        await stream.send_message(_ack(first, "ROOTCA"))
        source.put(workload_svid(ca, SECOND_ID), selectors=[my_uid()])
        await stream.send_message(_ack(first, "ROOTCA", "ALL"))
        second = await _recv(stream)
        assert second.version_info == "2"
        assert set(_secrets(second)) == {"ROOTCA", "ALL"}
        await stream.end()


async def test_a_nack_does_not_resend_the_rejected_version(
    channel: Channel, source: InMemoryIdentitySource, ca: Domain
) -> None:
    """A NACK (error_detail, previous version) is not answered: the next response answers new names."""
    async with _stream(channel) as stream:
        await stream.send_message(_request("default"))
        first = await _recv(stream)
        await stream.send_message(_ack(first, "default"))
        source.put(workload_svid(ca, WORKLOAD_ID), selectors=[my_uid()])
        second = await _recv(stream)
        nack = _request(
            "default",
            version_info=first.version_info,
            response_nonce=second.nonce,
            error_detail=status_pb2.Status(code=3, message="bad certificate"),
        )
        await stream.send_message(nack)
        await stream.send_message(_ack(second, "default", "ROOTCA"))
        third = await _recv(stream)
        assert third.version_info == "3"
        assert set(_secrets(third)) == {"default", "ROOTCA"}
        await stream.end()


async def test_new_names_are_answered_and_stale_nonces_ignored(channel: Channel) -> None:
    """A request with new names and the last nonce is answered at once; one with an old nonce is ignored."""
    async with _stream(channel) as stream:
        await stream.send_message(_request("default"))
        first = await _recv(stream)
        await stream.send_message(_ack(first, "default", "ROOTCA"))
        second = await _recv(stream)
        assert set(_secrets(second)) == {"default", "ROOTCA"}
        # Stale: it answers the first response, so its names are no subscription change.
        await stream.send_message(_ack(first, "ALL"))
        await stream.send_message(_ack(second, "default", "ROOTCA", "ALL"))
        third = await _recv(stream)
        assert third.version_info == "3"
        assert set(_secrets(third)) == {"default", "ROOTCA", "ALL"}
        await stream.end()


async def test_a_stream_for_an_unknown_name_ends_denied(channel: Channel) -> None:
    """StreamSecrets for a name the caller does not hold ends with PermissionDenied, as FetchSecrets."""

    async def call() -> None:
        async with _stream(channel) as stream:
            await stream.send_message(_request("spiffe://stranger.test"))
            await _recv(stream)

    with pytest.raises(GRPCError) as caught:
        await call()
    assert caught.value.status is Status.PERMISSION_DENIED
    assert TrustDomain("stranger.test").name in (caught.value.message or "")
