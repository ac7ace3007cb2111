"""Trust bundles: the SPIFFE bundle (a JWK Set) and PEM, both written and parsed back.

Format: https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE_Trust_Domain_and_Bundle.md. X.509 authorities
are JWKs with ``use: x509-svid``, no ``kid`` and exactly one certificate in ``x5c``; JWT authorities are JWKs with
``use: jwt-svid`` and a ``kid``. ``spiffe_sequence`` grows on every change; ``spiffe_refresh_hint`` is in seconds.
A parser ignores keys with an unknown ``use`` or ``kty``, as the standard asks of consumers.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sigil.ca.errors import BundleError
from sigil.ca.jwk import public_key_from_jwk, public_key_to_jwk
from sigil.ca.keys import PublicKey, public_key_der
from sigil.ca.spiffe_id import TrustDomain

__all__ = ["DEFAULT_REFRESH_HINT", "TrustBundle", "load_der_certificates"]

#: SPIRE's default and the standard's suggested fallback: five minutes.
DEFAULT_REFRESH_HINT = 300


def _key_jwk(key: PublicKey) -> dict[str, Any]:
    return dict(public_key_to_jwk(key))


def _jwk_key(jwk: Mapping[str, Any]) -> PublicKey | None:
    if jwk.get("kty") not in ("EC", "RSA"):
        return None
    if "d" in jwk:
        raise BundleError("a private key was found where a public key belongs")
    try:
        return public_key_from_jwk(jwk)
    except ValueError as err:
        raise BundleError(f"key {jwk.get('kid', '(x509)')!r} has unusable parameters") from err


def _anchor(cert: x509.Certificate, where: str) -> x509.Certificate:
    """``cert`` if its public key loads and is an EC or RSA key; else :class:`BundleError` naming ``where``.

    cryptography reads a certificate's key only when asked, so a point off its curve would otherwise pass parsing
    and fail later, when the bundle is written or used (found by fuzzing).
    """
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm) as err:
        raise BundleError(f"{where}: the certificate's public key cannot be read") from err
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise BundleError(f"{where}: the certificate's key is neither EC nor RSA")
    return cert


@dataclass(frozen=True, slots=True)
class TrustBundle:
    """The trust anchors of one trust domain."""

    trust_domain: TrustDomain
    x509_authorities: tuple[x509.Certificate, ...] = ()
    #: JWT signing keys by ``kid``.
    jwt_authorities: Mapping[str, PublicKey] = field(default_factory=dict)
    sequence: int = 0
    refresh_hint: int = DEFAULT_REFRESH_HINT

    # ------------------------------------------------------------------ writing
    def to_jwks(self) -> dict[str, Any]:
        """The SPIFFE bundle as a JSON-ready dict."""
        keys: list[dict[str, Any]] = []
        for cert in self.x509_authorities:
            jwk = _key_jwk(cert.public_key())  # type: ignore[arg-type]
            jwk["use"] = "x509-svid"
            jwk["x5c"] = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]
            keys.append(jwk)
        for kid, key in sorted(self.jwt_authorities.items()):
            jwk = _key_jwk(key)
            jwk["use"] = "jwt-svid"
            jwk["kid"] = kid
            keys.append(jwk)
        return {
            "keys": keys,
            "spiffe_sequence": self.sequence,
            "spiffe_refresh_hint": self.refresh_hint,
        }

    def to_json(self) -> bytes:
        return json.dumps(self.to_jwks(), indent=2).encode()

    def jwt_jwks_json(self) -> bytes:
        """Only the ``jwt-svid`` keys, as FetchJWTBundles carries them."""
        document = self.to_jwks()
        document["keys"] = [k for k in document["keys"] if k["use"] == "jwt-svid"]
        return json.dumps({"keys": document["keys"]}).encode()

    def to_pem(self) -> bytes:
        """The X.509 authorities as concatenated PEM (what ``bundle.pem`` and ``ca.crt`` consumers read)."""
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.x509_authorities)

    def x509_der(self) -> bytes:
        """The X.509 authorities as concatenated DER, as the Workload API carries a bundle."""
        return b"".join(c.public_bytes(serialization.Encoding.DER) for c in self.x509_authorities)

    def same_content(self, other: TrustBundle) -> bool:
        """True when both hold the same authorities (sequence and hint aside)."""
        return (
            self.trust_domain == other.trust_domain
            and self.x509_authorities == other.x509_authorities
            and {k: public_key_der(v) for k, v in self.jwt_authorities.items()}
            == {k: public_key_der(v) for k, v in other.jwt_authorities.items()}
        )

    # ------------------------------------------------------------------ parsing
    @classmethod
    def parse_jwks(cls, trust_domain: TrustDomain, data: bytes | str) -> TrustBundle:
        """Parse a SPIFFE bundle document; unknown ``use`` or ``kty`` entries are skipped."""
        try:
            document = json.loads(data)
        except (ValueError, UnicodeDecodeError, RecursionError) as err:
            # RecursionError: a few thousand nested brackets from a hostile peer.
            raise BundleError("not JSON") from err
        if not isinstance(document, dict):
            raise BundleError("the document is not a JSON object")
        keys = document.get("keys")
        if not isinstance(keys, list):
            raise BundleError("'keys' is missing or not a list")
        certs: list[x509.Certificate] = []
        jwt_keys: dict[str, PublicKey] = {}
        for index, jwk in enumerate(keys):
            if not isinstance(jwk, dict):
                raise BundleError(f"keys[{index}] is not an object")
            use = jwk.get("use")
            if use == "x509-svid":
                chain = jwk.get("x5c")
                if not isinstance(chain, list) or not chain:
                    continue  # consumers ignore x509-svid entries without certificates
                if not isinstance(chain[0], str):
                    raise BundleError(f"keys[{index}].x5c[0] is not a base64 string")
                try:
                    cert = x509.load_der_x509_certificate(base64.b64decode(chain[0], validate=True))
                except ValueError as err:
                    raise BundleError(f"keys[{index}].x5c[0] is not a DER certificate") from err
                certs.append(_anchor(cert, f"keys[{index}].x5c[0]"))
            elif use == "jwt-svid":
                kid = jwk.get("kid")
                if not isinstance(kid, str) or not kid:
                    raise BundleError(f"keys[{index}] is a jwt-svid key without a kid")
                key = _jwk_key(jwk)
                if key is not None:
                    if kid in jwt_keys:
                        raise BundleError(f"kid {kid!r} appears twice")
                    jwt_keys[kid] = key
        sequence = document.get("spiffe_sequence", 0)
        hint = document.get("spiffe_refresh_hint", DEFAULT_REFRESH_HINT)
        if not isinstance(sequence, int) or isinstance(sequence, bool) or sequence < 0:
            raise BundleError("spiffe_sequence must be a non-negative integer")
        if not isinstance(hint, int) or isinstance(hint, bool) or hint <= 0:
            raise BundleError("spiffe_refresh_hint must be a positive integer")
        return cls(trust_domain, tuple(certs), jwt_keys, sequence, hint)

    @classmethod
    def parse_pem(cls, trust_domain: TrustDomain, data: bytes) -> TrustBundle:
        """A bundle of X.509 authorities only, from concatenated PEM."""
        try:
            certs = x509.load_pem_x509_certificates(data)
        except ValueError as err:
            raise BundleError("not a PEM certificate bundle") from err
        return cls(trust_domain, tuple(_anchor(c, f"certificate {i}") for i, c in enumerate(certs)))

    @classmethod
    def parse_der(cls, trust_domain: TrustDomain, data: bytes) -> TrustBundle:
        """A bundle of X.509 authorities from concatenated DER, as the Workload API carries it."""
        return cls(trust_domain, load_der_certificates(data))


def load_der_certificates(data: bytes) -> tuple[x509.Certificate, ...]:
    """Split concatenated DER certificates (the Workload API's encoding) and parse each one."""
    certs: list[x509.Certificate] = []
    offset = 0
    while offset < len(data):
        # Each certificate is one DER SEQUENCE: tag 0x30, then a short or long-form length.
        if data[offset] != 0x30 or offset + 2 > len(data):
            raise BundleError(f"byte {offset} does not start a DER certificate")
        first = data[offset + 1]
        header = 2
        length = first
        if first & 0x80:
            count = first & 0x7F
            if count == 0 or count > 4 or offset + 2 + count > len(data):
                raise BundleError(f"byte {offset}: bad DER length")
            length = int.from_bytes(data[offset + 2 : offset + 2 + count], "big")
            header += count
        end = offset + header + length
        if end > len(data):
            raise BundleError(f"byte {offset}: the certificate is cut short")
        try:
            cert = x509.load_der_x509_certificate(data[offset:end])
        except ValueError as err:
            raise BundleError(f"byte {offset} does not start a DER certificate") from err
        certs.append(_anchor(cert, f"byte {offset}"))
        offset = end
    return tuple(certs)
