"""The Workload API as a SPIFFE client sees it: the unmodified py-spiffe client and raw gRPC calls."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import grpc  # type: ignore[import-untyped]  # no types-grpcio among the dependencies
import pytest
from cryptography import x509
from google.protobuf import json_format  # type: ignore[import-untyped]
from sigil_testing.pki import Domain
from spiffe import JwtSource, WorkloadApiClient, X509Source
from spiffe import SpiffeId as PySpiffeId
from spiffe import TrustDomain as PyTrustDomain

from sigil.ca.spiffe_id import SpiffeId
from sigil.node_agent._proto import workload_pb2 as pb
from sigil.node_agent.attestation.selectors import Selector
from sigil.node_agent.memory_source import InMemoryIdentitySource
from sigil.node_agent.workload_api.endpoint import WorkloadApiServer

from .conftest import FEDERATED, TRUST_DOMAIN, WORKLOAD_ID, my_uid, trust_bundles, workload_svid

HEADER = [("workload.spiffe.io", "true")]

_METHODS: dict[str, tuple[bool, Any, Any]] = {
    "FetchX509SVID": (True, pb.X509SVIDRequest(), pb.X509SVIDResponse),
    "FetchX509Bundles": (True, pb.X509BundlesRequest(), pb.X509BundlesResponse),
    "FetchJWTSVID": (False, pb.JWTSVIDRequest(audience=["db"]), pb.JWTSVIDResponse),
    "FetchJWTBundles": (True, pb.JWTBundlesRequest(), pb.JWTBundlesResponse),
    "ValidateJWTSVID": (
        False,
        pb.ValidateJWTSVIDRequest(audience="db", svid="x.y.z"),
        pb.ValidateJWTSVIDResponse,
    ),
}


def _call(
    server: WorkloadApiServer, method: str, request: Any = None, *, header: bool = True
) -> Any:
    """One raw gRPC call on the spec's path; a stream's first message. Raises grpc.RpcError."""
    streaming, default_request, response_type = _METHODS[method]
    with grpc.insecure_channel(f"unix:{server.settings.socket_path}") as channel:
        path = f"/SpiffeWorkloadAPI/{method}"
        kwargs = {
            "request_serializer": lambda m: m.SerializeToString(),
            "response_deserializer": response_type.FromString,
        }
        metadata = HEADER if header else []
        payload = request if request is not None else default_request
        if streaming:
            responses = channel.unary_stream(path, **kwargs)(payload, metadata=metadata, timeout=10)
            try:
                return next(responses)
            finally:
                responses.cancel()
        return channel.unary_unary(path, **kwargs)(payload, metadata=metadata, timeout=10)


async def _status_of(
    server: WorkloadApiServer, method: str, request: Any = None, *, header: bool = True
) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        await asyncio.to_thread(_call, server, method, request, header=header)
    error: Any = caught.value
    return error.code(), error.details()


class _Stream:
    """A raw FetchX509SVID stream read from a worker thread."""

    def __init__(self, server: WorkloadApiServer) -> None:
        self._channel = grpc.insecure_channel(f"unix:{server.settings.socket_path}")
        method = self._channel.unary_stream(
            "/SpiffeWorkloadAPI/FetchX509SVID",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=pb.X509SVIDResponse.FromString,
        )
        self._responses: Any = method(pb.X509SVIDRequest(), metadata=HEADER, timeout=30)

    async def next(self) -> pb.X509SVIDResponse:
        return await asyncio.wait_for(asyncio.to_thread(next, self._responses), timeout=10)

    def close(self) -> None:
        self._responses.cancel()
        self._channel.close()


@pytest.fixture
def client(server: WorkloadApiServer) -> Iterator[WorkloadApiClient]:
    with WorkloadApiClient(
        socket_path=server.settings.endpoint, default_timeout=10
    ) as workload_client:
        yield workload_client


# ---------------------------------------------------------------------------------------------- py-spiffe


async def test_py_spiffe_fetches_the_x509_svid_with_its_bundles(
    client: WorkloadApiClient, ca: Domain
) -> None:
    """py-spiffe gets the caller's SVID, its own trust domain's bundle and the federated one."""
    context = await asyncio.to_thread(client.fetch_x509_context)
    svid = context.default_svid
    assert str(svid.spiffe_id) == str(WORKLOAD_ID)
    own = context.x509_bundle_set.get_bundle_for_trust_domain(PyTrustDomain(TRUST_DOMAIN.name))
    assert own is not None
    assert ca.signer.authority.certificate in own.x509_authorities
    assert (
        context.x509_bundle_set.get_bundle_for_trust_domain(PyTrustDomain(FEDERATED.name))
        is not None
    )


async def test_py_spiffe_fetches_x509_bundles_of_every_trust_domain(
    client: WorkloadApiClient,
) -> None:
    """FetchX509Bundles carries the own and the federated trust domain's authorities."""
    bundles = await asyncio.to_thread(client.fetch_x509_bundles)
    names = {b.trust_domain.name for b in bundles.bundles}
    assert names == {TRUST_DOMAIN.name, FEDERATED.name}


async def test_py_spiffe_fetches_a_jwt_svid_for_its_audience(client: WorkloadApiClient) -> None:
    """FetchJWTSVID returns a token for the caller's SPIFFE ID and the asked audience."""
    svid = await asyncio.to_thread(client.fetch_jwt_svid, {"db"})
    assert str(svid.spiffe_id) == str(WORKLOAD_ID)
    assert svid.audience == {"db"}


async def test_py_spiffe_fetches_jwt_bundles_with_the_signing_key(
    client: WorkloadApiClient, ca: Domain
) -> None:
    """FetchJWTBundles gives each trust domain's JWT keys by kid."""
    bundles = await asyncio.to_thread(client.fetch_jwt_bundles)
    own = bundles.get_bundle_for_trust_domain(PyTrustDomain(TRUST_DOMAIN.name))
    assert own is not None
    assert own.get_jwt_authority(ca.jwt_signer.authority.authority_id) is not None


async def test_py_spiffe_validates_a_jwt_svid(client: WorkloadApiClient, ca: Domain) -> None:
    """ValidateJWTSVID accepts a token of the trust domain for its audience."""
    token = ca.mint_jwt(WORKLOAD_ID, ["db"])
    svid = await asyncio.to_thread(client.validate_jwt_svid, token, "db")
    assert svid.spiffe_id == PySpiffeId(str(WORKLOAD_ID))


async def test_jwt_source_sees_the_bundles_and_fetches_svids(server: WorkloadApiServer) -> None:
    """py-spiffe's JwtSource streams the JWT bundles and fetches JWT-SVIDs."""
    jwt_source = await asyncio.to_thread(
        JwtSource, socket_path=server.settings.endpoint, timeout_in_seconds=10
    )
    try:
        assert jwt_source.get_bundle_for_trust_domain(PyTrustDomain(TRUST_DOMAIN.name)) is not None
        svid = await asyncio.to_thread(jwt_source.fetch_svid, {"db"})
        assert str(svid.spiffe_id) == str(WORKLOAD_ID)
    finally:
        await asyncio.to_thread(jwt_source.close)


async def test_x509_source_sees_a_rotation(
    server: WorkloadApiServer, source: InMemoryIdentitySource, ca: Domain
) -> None:
    """After the source rotates the SVID, X509Source holds the new certificate."""
    x509_source = await asyncio.to_thread(
        X509Source, socket_path=server.settings.endpoint, timeout_in_seconds=10
    )
    updated = threading.Event()
    try:
        first = x509_source.get_x509_context().default_svid.leaf
        x509_source.subscribe_for_updates(updated.set)
        rotated = workload_svid(ca, WORKLOAD_ID, federates_with=frozenset({FEDERATED}))
        source.put(rotated, selectors=[my_uid()])
        assert await asyncio.to_thread(updated.wait, 10)
        leaf = x509_source.get_x509_context().default_svid.leaf
        assert leaf != first
        assert leaf == x509.load_der_x509_certificate(rotated.cert_chain)
    finally:
        await asyncio.to_thread(x509_source.close)


# ---------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("method", sorted(_METHODS))
async def test_a_call_without_the_security_header_is_an_invalid_argument(
    server: WorkloadApiServer, method: str
) -> None:
    """Every RPC refuses a call without ``workload.spiffe.io: true`` with InvalidArgument."""
    code, details = await _status_of(server, method, header=False)
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert details == "security header missing from request"


async def test_a_caller_of_an_unknown_uid_is_denied(
    server: WorkloadApiServer, source: InMemoryIdentitySource, ca: Domain
) -> None:
    """A caller whose uid no entry names gets PermissionDenied "no identity issued"."""
    source.remove(WORKLOAD_ID)
    source.put(
        workload_svid(ca, TRUST_DOMAIN.spiffe_id("other")),
        selectors=[Selector("unix", "uid:4242424")],
    )
    for method in ("FetchX509SVID", "FetchX509Bundles", "FetchJWTSVID", "FetchJWTBundles"):
        code, details = await _status_of(server, method)
        assert (method, code, details) == (
            method,
            grpc.StatusCode.PERMISSION_DENIED,
            "no identity issued",
        )


async def test_py_spiffe_reports_permission_denied(
    client: WorkloadApiClient, source: InMemoryIdentitySource
) -> None:
    """The unmodified client surfaces the denial to its caller."""
    source.remove(WORKLOAD_ID)
    with pytest.raises(Exception, match="PERMISSION_DENIED"):
        await asyncio.to_thread(client.fetch_x509_svid)


async def test_fetch_jwt_svid_needs_an_audience(server: WorkloadApiServer) -> None:
    """FetchJWTSVID without an audience is an InvalidArgument."""
    code, details = await _status_of(server, "FetchJWTSVID", pb.JWTSVIDRequest())
    assert (code, details) == (grpc.StatusCode.INVALID_ARGUMENT, "audience must be specified")


async def test_fetch_jwt_svid_for_an_id_not_held_is_denied(server: WorkloadApiServer) -> None:
    """Asking for a JWT-SVID of a SPIFFE ID the caller does not hold is PermissionDenied."""
    request = pb.JWTSVIDRequest(audience=["db"], spiffe_id=str(TRUST_DOMAIN.spiffe_id("admin")))
    code, _ = await _status_of(server, "FetchJWTSVID", request)
    assert code is grpc.StatusCode.PERMISSION_DENIED


async def test_fetch_jwt_svid_for_a_malformed_id_is_an_invalid_argument(
    server: WorkloadApiServer,
) -> None:
    """A requested SPIFFE ID that does not parse is InvalidArgument."""
    request = pb.JWTSVIDRequest(audience=["db"], spiffe_id="https://example.org/x")
    code, _ = await _status_of(server, "FetchJWTSVID", request)
    assert code is grpc.StatusCode.INVALID_ARGUMENT


async def test_fetch_jwt_svid_for_a_held_id_returns_only_that_one(
    server: WorkloadApiServer,
) -> None:
    """Naming a held SPIFFE ID returns exactly that identity's token."""
    request = pb.JWTSVIDRequest(audience=["db"], spiffe_id=str(WORKLOAD_ID))
    response = await asyncio.to_thread(_call, server, "FetchJWTSVID", request)
    assert [s.spiffe_id for s in response.svids] == [str(WORKLOAD_ID)]


async def test_validate_returns_the_spiffe_id_and_claims(
    server: WorkloadApiServer, ca: Domain
) -> None:
    """ValidateJWTSVID answers the subject and the token's claims as a Struct."""
    token = ca.mint_jwt(WORKLOAD_ID, ["db"])
    request = pb.ValidateJWTSVIDRequest(audience="db", svid=token)
    response = await asyncio.to_thread(_call, server, "ValidateJWTSVID", request)
    claims = json_format.MessageToDict(response.claims)
    assert response.spiffe_id == str(WORKLOAD_ID)
    assert (claims["sub"], claims["aud"]) == (str(WORKLOAD_ID), ["db"])


@pytest.mark.parametrize(
    ("audience", "svid", "needle"),
    [
        ("", "token", "audience must be specified"),
        ("db", "", "svid must be specified"),
        ("other", None, "audience"),
        ("db", "not-a-jwt", "invalid JWT-SVID"),
    ],
)
async def test_validate_refuses_bad_input_as_invalid_argument(
    server: WorkloadApiServer, ca: Domain, audience: str, svid: str | None, needle: str
) -> None:
    """Missing fields, a wrong audience and a malformed token are each InvalidArgument."""
    token = svid if svid is not None else ca.mint_jwt(WORKLOAD_ID, ["db"])
    code, details = await _status_of(
        server, "ValidateJWTSVID", pb.ValidateJWTSVIDRequest(audience=audience, svid=token)
    )
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert needle in details


async def test_validate_refuses_a_token_of_an_unknown_trust_domain(
    server: WorkloadApiServer,
) -> None:
    """A token whose subject's trust domain has no bundle here does not validate."""
    stranger = Domain(SpiffeId.parse("spiffe://stranger.test/x").trust_domain, now=None)
    token = stranger.mint_jwt(SpiffeId.parse("spiffe://stranger.test/x"), ["db"])
    code, details = await _status_of(
        server, "ValidateJWTSVID", pb.ValidateJWTSVIDRequest(audience="db", svid=token)
    )
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert "stranger.test" in details


# ---------------------------------------------------------------------------------------------- streams


async def test_a_stream_sends_each_change_once_and_nothing_when_nothing_changed(
    server: WorkloadApiServer, source: InMemoryIdentitySource, ca: Domain
) -> None:
    """Notifications that change nothing for the caller send nothing; the next real change arrives next."""
    stream = _Stream(server)
    try:
        first = await stream.next()
        source.changes.notify()
        source.put(
            workload_svid(ca, TRUST_DOMAIN.spiffe_id("not-me")),
            selectors=[Selector("unix", "uid:4242424")],
        )
        rotated = workload_svid(ca, WORKLOAD_ID, federates_with=frozenset({FEDERATED}))
        source.put(rotated, selectors=[my_uid()])
        second = await stream.next()
        assert first.svids[0].x509_svid != second.svids[0].x509_svid
        assert second.svids[0].x509_svid == rotated.cert_chain
    finally:
        stream.close()


async def test_a_stream_sends_a_gained_identity_and_a_bundle_change(
    server: WorkloadApiServer, source: InMemoryIdentitySource, ca: Domain, partner_ca: Domain
) -> None:
    """A second identity and a rotated federated bundle each reach an open stream with the full state."""
    stream = _Stream(server)
    try:
        await stream.next()
        extra = TRUST_DOMAIN.spiffe_id("batch")
        source.put(workload_svid(ca, extra, hint="batch"), selectors=[my_uid()])
        gained = await stream.next()
        assert [s.spiffe_id for s in gained.svids] == [str(WORKLOAD_ID), str(extra)]
        new_partner = Domain(FEDERATED, now=None)
        source.set_bundles(trust_bundles(ca, new_partner))
        rotated = await stream.next()
        assert rotated.federated_bundles[str(FEDERATED.id)] == new_partner.bundle.x509_der()
        assert rotated.federated_bundles[str(FEDERATED.id)] != partner_ca.bundle.x509_der()
    finally:
        stream.close()


async def test_a_stream_ends_with_permission_denied_when_the_identity_is_lost(
    server: WorkloadApiServer, source: InMemoryIdentitySource
) -> None:
    """When the caller's last entry goes away, its stream is closed with PermissionDenied."""
    stream = _Stream(server)
    try:
        await stream.next()
        source.remove(WORKLOAD_ID)
        with pytest.raises(grpc.RpcError) as caught:
            await stream.next()
        error: Any = caught.value
        assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    finally:
        stream.close()
