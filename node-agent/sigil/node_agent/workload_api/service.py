"""The SPIFFE Workload API: five RPCs with the exact semantics of the standard, over grpclib.

Semantics (https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE_Workload_Endpoint.md and
SPIFFE_Workload_API.md, reference §2):

- every call must carry ``workload.spiffe.io: true``, else ``InvalidArgument`` before anything else happens;
- the caller is attested from the credentials its connection had at accept, never from what it sends;
- streams send the complete state at once and again after every change, never the same bytes twice;
- a caller with no identity gets ``PermissionDenied`` "no identity issued" and retries with backoff.

The method paths are the standard's (``/SpiffeWorkloadAPI/...``, its proto has no package); our generated
messages live in a package only so they can share a process with py-spiffe's. The frame around every call (the
header, attestation, errors to status codes) is shared with the policy service (``sigil.node_agent.grpc_edge``).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import structlog

# types-protobuf is not among the dependencies yet; the generated messages are typed as Any meanwhile.
from google.protobuf import struct_pb2  # type: ignore[import-untyped]
from grpclib.const import Cardinality, Handler
from grpclib.server import Stream

from sigil.ca.errors import InvalidSpiffeIdError, JwtSvidError
from sigil.ca.spiffe_id import SpiffeId, TrustDomain
from sigil.node_agent._proto import workload_pb2 as pb
from sigil.node_agent.attestation.caller import CallerAttestor
from sigil.node_agent.attestation.selectors import WorkloadAttestation
from sigil.node_agent.errors import (
    IdentityUnavailableError,
    InvalidWorkloadRequestError,
    JwtSvidInvalidError,
    NoIdentityError,
    NotEntitledError,
    PeerGoneError,
)
from sigil.node_agent.grpc_edge import Caller, attested_call
from sigil.node_agent.identity_source import IdentitySource, TrustBundles

__all__ = ["SERVICE_NAME", "WorkloadApiService"]

SERVICE_NAME = "SpiffeWorkloadAPI"

_log = structlog.get_logger(__name__)


class _Message(Protocol):
    def SerializeToString(self, *, deterministic: bool = ...) -> bytes: ...  # noqa: N802 -- protobuf's name


_Msg = TypeVar("_Msg", bound=_Message)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _td_key(trust_domain: TrustDomain) -> str:
    # Bundle maps are keyed by the trust domain's SPIFFE ID, as SPIRE sends them; py-spiffe accepts either form.
    return str(trust_domain.id)


class WorkloadApiService:
    """The Workload API's handlers; :meth:`bind` gives the routes for one accepted connection."""

    def __init__(
        self,
        *,
        source: IdentitySource,
        attestor: CallerAttestor,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._source = source
        self._attestor = attestor
        # The clock decides JWT-SVID expiry in ValidateJWTSVID; tests inject theirs.
        self._clock = clock or _utc_now

    def bind(self, caller: Caller) -> dict[str, Handler]:
        """Routes whose handlers serve ``caller`` (or fail with its error, when capture failed at accept)."""

        def route(
            func: Callable[[Caller, Stream[Any, Any]], Awaitable[None]],
            cardinality: Cardinality,
            request: type[Any],
            reply: type[Any],
        ) -> Handler:
            return Handler(functools.partial(func, caller), cardinality, request, reply)

        path = f"/{SERVICE_NAME}/"
        return {
            path + "FetchX509SVID": route(
                self._fetch_x509_svid,
                Cardinality.UNARY_STREAM,
                pb.X509SVIDRequest,
                pb.X509SVIDResponse,
            ),
            path + "FetchX509Bundles": route(
                self._fetch_x509_bundles,
                Cardinality.UNARY_STREAM,
                pb.X509BundlesRequest,
                pb.X509BundlesResponse,
            ),
            path + "FetchJWTSVID": route(
                self._fetch_jwt_svid, Cardinality.UNARY_UNARY, pb.JWTSVIDRequest, pb.JWTSVIDResponse
            ),
            path + "FetchJWTBundles": route(
                self._fetch_jwt_bundles,
                Cardinality.UNARY_STREAM,
                pb.JWTBundlesRequest,
                pb.JWTBundlesResponse,
            ),
            path + "ValidateJWTSVID": route(
                self._validate_jwt_svid,
                Cardinality.UNARY_UNARY,
                pb.ValidateJWTSVIDRequest,
                pb.ValidateJWTSVIDResponse,
            ),
        }

    def __mapping__(self) -> dict[str, Handler]:
        # Routes for a connection whose credentials were never captured (not a Unix socket): refuse everyone.
        return self.bind(PeerGoneError(0, "no peer credentials on this connection"))

    # -- the call frame: header, attestation, error translation -------------------------------------------

    def _call(
        self, caller: Caller, stream: Stream[Any, Any], method: str
    ) -> AbstractAsyncContextManager[WorkloadAttestation]:
        return attested_call(caller, stream, self._attestor, method=method)

    async def _stream_changes(
        self, stream: Stream[Any, _Msg], build: Callable[[], Awaitable[_Msg]]
    ) -> None:
        """Send ``build()`` now and after each change, skipping a response identical to the last one sent."""
        changes = self._source.changes
        last: bytes | None = None
        while True:
            revision = changes.revision
            response = await build()
            # Deterministic serialization orders map entries, so equal content gives equal bytes.
            data = response.SerializeToString(deterministic=True)
            if data != last:
                await stream.send_message(response)
                last = data
            await changes.wait_after(revision)

    # -- the RPCs -----------------------------------------------------------------------------------------

    async def _fetch_x509_svid(
        self, caller: Caller, stream: Stream[pb.X509SVIDRequest, pb.X509SVIDResponse]
    ) -> None:
        async with self._call(caller, stream, "FetchX509SVID") as workload:
            await stream.recv_message()
            async with self._source.streaming(workload):
                await self._stream_changes(stream, functools.partial(self._x509_svids, workload))

    async def _x509_svids(self, workload: WorkloadAttestation) -> pb.X509SVIDResponse:
        svids = await self._source.x509_svids(workload)
        if not svids:
            raise NoIdentityError
        bundles = self._source.bundles()
        response = pb.X509SVIDResponse()
        federated: set[TrustDomain] = set()
        for svid in svids:
            own = bundles.x509_authorities.get(svid.spiffe_id.trust_domain)
            if own is None:
                raise IdentityUnavailableError(f"no bundle for {svid.spiffe_id.trust_domain} yet")
            response.svids.append(
                pb.X509SVID(
                    spiffe_id=str(svid.spiffe_id),
                    x509_svid=svid.cert_chain,
                    x509_svid_key=svid.private_key,
                    bundle=own,
                    hint=svid.hint,
                )
            )
            federated |= svid.federates_with - {svid.spiffe_id.trust_domain}
        for trust_domain in sorted(federated):
            certs = bundles.x509_authorities.get(trust_domain)
            if certs is not None:
                response.federated_bundles[_td_key(trust_domain)] = certs
        return response

    async def _fetch_x509_bundles(
        self, caller: Caller, stream: Stream[pb.X509BundlesRequest, pb.X509BundlesResponse]
    ) -> None:
        async with self._call(caller, stream, "FetchX509Bundles") as workload:
            await stream.recv_message()
            await self._stream_changes(stream, functools.partial(self._x509_bundles, workload))

    async def _x509_bundles(self, workload: WorkloadAttestation) -> pb.X509BundlesResponse:
        await self._require_identity(workload)
        bundles = self._source.bundles()
        return pb.X509BundlesResponse(
            bundles={_td_key(td): certs for td, certs in bundles.x509_authorities.items()}
        )

    async def _fetch_jwt_bundles(
        self, caller: Caller, stream: Stream[pb.JWTBundlesRequest, pb.JWTBundlesResponse]
    ) -> None:
        async with self._call(caller, stream, "FetchJWTBundles") as workload:
            await stream.recv_message()
            await self._stream_changes(stream, functools.partial(self._jwt_bundles, workload))

    async def _jwt_bundles(self, workload: WorkloadAttestation) -> pb.JWTBundlesResponse:
        await self._require_identity(workload)
        bundles = self._source.bundles()
        return pb.JWTBundlesResponse(
            bundles={_td_key(td): jwks for td, jwks in bundles.jwt_authorities.items()}
        )

    async def _require_identity(self, workload: WorkloadAttestation) -> Sequence[SpiffeId]:
        # SPIRE answers bundle requests only for callers that hold some identity ("no identity issued").
        entitled = await self._source.entitlements(workload)
        if not entitled:
            raise NoIdentityError
        return entitled

    async def _fetch_jwt_svid(
        self, caller: Caller, stream: Stream[pb.JWTSVIDRequest, pb.JWTSVIDResponse]
    ) -> None:
        async with self._call(caller, stream, "FetchJWTSVID") as workload:
            request = await stream.recv_message()
            if request is None:
                raise InvalidWorkloadRequestError("the request message is missing")
            audiences = list(request.audience)
            if not audiences:
                raise InvalidWorkloadRequestError("audience must be specified")
            requested: SpiffeId | None = None
            if request.spiffe_id:
                try:
                    requested = SpiffeId.parse(request.spiffe_id)
                except InvalidSpiffeIdError as err:
                    raise InvalidWorkloadRequestError(
                        f"invalid requested SPIFFE ID: {err.rule}"
                    ) from err
            entitled = await self._require_identity(workload)
            if requested is not None:
                if requested not in entitled:
                    raise NotEntitledError(str(requested))
                entitled = [requested]
            response = pb.JWTSVIDResponse()
            for spiffe_id in entitled:
                svid = await self._source.jwt_svid(workload, spiffe_id, audiences=audiences)
                response.svids.append(
                    pb.JWTSVID(spiffe_id=str(svid.spiffe_id), svid=svid.token, hint=svid.hint)
                )
            await stream.send_message(response)

    async def _validate_jwt_svid(
        self, caller: Caller, stream: Stream[pb.ValidateJWTSVIDRequest, pb.ValidateJWTSVIDResponse]
    ) -> None:
        async with self._call(caller, stream, "ValidateJWTSVID"):
            request = await stream.recv_message()
            if request is None:
                raise InvalidWorkloadRequestError("the request message is missing")
            if not request.audience:
                raise InvalidWorkloadRequestError("audience must be specified")
            if not request.svid:
                raise InvalidWorkloadRequestError("svid must be specified")
            # PyJWT is imported at the first validation, not at start: most workloads never ask for one, and
            # importing it costs every node about 1 MB (sigil/ca/jwk.py says why).
            from sigil.ca.jwtsvid import validate_jwt_svid

            bundles: TrustBundles = self._source.bundles()
            # The rules (algorithms, header, sub/aud/exp, the key from the *subject's* trust domain:
            # https://github.com/spiffe/spiffe/blob/main/standards/JWT-SVID.md) live once, in the CA; the keys
            # come parsed with the bundles, so a validation parses nothing but the token.
            try:
                svid = validate_jwt_svid(
                    request.svid,
                    audience=request.audience,
                    keys_for=bundles.jwt_keys,
                    now=self._clock(),
                )
            except JwtSvidError as err:
                raise JwtSvidInvalidError(err.reason) from err
            struct = struct_pb2.Struct()
            struct.update(dict(svid.claims))
            await stream.send_message(
                pb.ValidateJWTSVIDResponse(spiffe_id=str(svid.spiffe_id), claims=struct)
            )
