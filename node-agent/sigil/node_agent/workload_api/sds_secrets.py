"""The secrets Envoy asks the agent for over SDS, under the names SPIRE's agent gives them.

Existing Envoy configurations written for SPIRE must work unchanged, so the names are SPIRE's
(https://github.com/spiffe/spire/blob/main/pkg/agent/endpoints/sdsv3/handler.go, ``buildResponse``):

- ``default``: the caller's default (first) X509-SVID as a ``tls_certificate``;
- a SPIFFE ID the caller holds: that X509-SVID as a ``tls_certificate`` named by the ID;
- ``ROOTCA``: the own trust domain's bundle as a ``validation_context``;
- ``spiffe://TD``: one trust domain's bundle (the own one, or one the caller's SVIDs federate with);
- ``ALL``: the own and federated bundles in one SPIFFE certificate validator configuration;
- no name at all: every bundle under its ``spiffe://TD`` name and every SVID under its SPIFFE ID.

A bundle travels as the SPIFFE certificate validator (``envoy.tls.cert_validator.spiffe``, one trust domain each)
when the Envoy says it is 1.18 or later in its node's build version, and as a plain ``trusted_ca`` otherwise, as
SPIRE decides; ``ALL`` needs the validator. A name the caller holds nothing under is refused as a JWT-SVID for a
SPIFFE ID it does not hold is refused by the Workload API (``NotEntitledError``, ``PermissionDenied``).
"""

from __future__ import annotations

import base64
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cryptography.hazmat.primitives import serialization
from envoy.config.core.v3 import base_pb2, extension_pb2
from envoy.extensions.transport_sockets.tls.v3 import (
    common_pb2,
    secret_pb2,
    tls_spiffe_validator_config_pb2,
)
from google.protobuf import any_pb2  # type: ignore[import-untyped]

from sigil.ca.bundle import load_der_certificates
from sigil.ca.spiffe_id import TrustDomain
from sigil.node_agent.errors import InvalidWorkloadRequestError, NotEntitledError
from sigil.node_agent.identity_source import TrustBundles, WorkloadX509Svid

__all__ = [
    "ALL_BUNDLES",
    "DEFAULT_BUNDLE",
    "DEFAULT_SVID",
    "SECRET_TYPE_URL",
    "SPIFFE_VALIDATOR",
    "build_secrets",
    "supports_spiffe_validator",
]

DEFAULT_SVID = "default"
DEFAULT_BUNDLE = "ROOTCA"
ALL_BUNDLES = "ALL"
# A protobuf type URL, not a credential (ruff S105 reads "SECRET" as one).
SECRET_TYPE_URL = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"  # noqa: S105
SPIFFE_VALIDATOR = "envoy.tls.cert_validator.spiffe"


def supports_spiffe_validator(node: Any) -> bool:
    """True when the requesting Envoy's build version is 1.18 or later (the SPIFFE validator arrived in 1.18)."""
    if not node.HasField("user_agent_build_version"):
        return False
    version = node.user_agent_build_version.version
    return (version.major_number, version.minor_number) >= (1, 18)


def _pem(label: str, der: bytes) -> bytes:
    body = "\n".join(textwrap.wrap(base64.b64encode(der).decode(), 64))
    return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----\n".encode()


def _inline(data: bytes) -> Any:
    return base_pb2.DataSource(inline_bytes=data)


def _tls_certificate(name: str, svid: WorkloadX509Svid) -> Any:
    # The chain is kept as concatenated DER, leaf first (identity_source.py); Envoy reads PEM.
    chain = b"".join(
        cert.public_bytes(serialization.Encoding.PEM)
        for cert in load_der_certificates(svid.cert_chain)
    )
    return secret_pb2.Secret(
        name=name,
        tls_certificate=common_pb2.TlsCertificate(
            certificate_chain=_inline(chain),
            private_key=_inline(_pem("PRIVATE KEY", svid.private_key)),
        ),
    )


def _validator(pems: Mapping[TrustDomain, bytes]) -> Any:
    config = tls_spiffe_validator_config_pb2.SPIFFECertValidatorConfig(
        trust_domains=[
            tls_spiffe_validator_config_pb2.SPIFFECertValidatorConfig.TrustDomain(
                name=td.name, trust_bundle=_inline(pem)
            )
            for td, pem in sorted(pems.items(), key=lambda item: item[0].name)
        ]
    )
    typed = any_pb2.Any()
    typed.Pack(config)
    return common_pb2.CertificateValidationContext(
        custom_validator_config=extension_pb2.TypedExtensionConfig(
            name=SPIFFE_VALIDATOR, typed_config=typed
        )
    )


def _validation_context(name: str, pems: Mapping[TrustDomain, bytes], *, spiffe: bool) -> Any:
    if spiffe:
        context = _validator(pems)
    else:
        (pem,) = pems.values()
        context = common_pb2.CertificateValidationContext(trusted_ca=_inline(pem))
    return secret_pb2.Secret(name=name, validation_context=context)


def build_secrets(
    names: Iterable[str],
    *,
    svids: Sequence[WorkloadX509Svid],
    bundles: TrustBundles,
    spiffe_validator: bool,
) -> list[Any]:
    """The ``Secret`` messages for ``names`` (all of them when empty), in the order asked.

    ``svids`` are the caller's, default first, and must not be empty. Raises ``NotEntitledError`` for a name the
    caller holds nothing under, ``InvalidWorkloadRequestError`` for ``ALL`` without the SPIFFE validator.
    """
    own = bundles.trust_domain
    visible = {own}
    for svid in svids:
        visible |= svid.federates_with
    pems = {td: bundles.bundles[td].to_pem() for td in sorted(visible) if td in bundles.bundles}
    by_id = {str(svid.spiffe_id): svid for svid in reversed(svids)}
    by_bundle = {str(td.id): td for td in pems}

    wanted = list(dict.fromkeys(n for n in names if n))
    if not wanted:
        wanted = list(by_bundle) + [str(svid.spiffe_id) for svid in svids]
    secrets = []
    for name in wanted:
        if name == DEFAULT_SVID:
            secrets.append(_tls_certificate(name, svids[0]))
        elif name in by_id:
            secrets.append(_tls_certificate(name, by_id[name]))
        elif name == DEFAULT_BUNDLE:
            secrets.append(_validation_context(name, {own: pems[own]}, spiffe=spiffe_validator))
        elif name in by_bundle:
            td = by_bundle[name]
            secrets.append(_validation_context(name, {td: pems[td]}, spiffe=spiffe_validator))
        elif name == ALL_BUNDLES:
            if not spiffe_validator:
                raise InvalidWorkloadRequestError(
                    f"{ALL_BUNDLES} needs the SPIFFE certificate validator of Envoy 1.18 or later"
                )
            secrets.append(_validation_context(name, pems, spiffe=True))
        else:
            raise NotEntitledError(name)
    return secrets
