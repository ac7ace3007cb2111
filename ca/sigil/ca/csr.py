"""Certificate signing requests as the CA accepts them.

The CSR proves possession of the key and supplies the public key; nothing else in it is trusted. Identity, SANs and
extensions come from the CA's decision (https://github.com/spiffe/spiffe/blob/main/standards/X509-SVID.md).
"""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm

from sigil.ca.errors import MalformedCsrError
from sigil.ca.keys import PublicKey, key_type_of, verify_signature

__all__ = ["MAX_CSR_BYTES", "parse_csr"]

#: A P-384 or RSA-2048 CSR is well under 2 KiB; anything much larger is not a CSR we sign.
MAX_CSR_BYTES = 16 * 1024


def parse_csr(
    data: bytes | x509.CertificateSigningRequest,
) -> tuple[x509.CertificateSigningRequest, PublicKey]:
    """Parse a PEM or DER CSR, verify its signature and key type, and return it with its public key."""
    if isinstance(data, x509.CertificateSigningRequest):
        csr = data
    else:
        if not isinstance(data, bytes | bytearray):
            raise TypeError(f"a CSR is bytes, not {type(data).__name__}")
        if len(data) > MAX_CSR_BYTES:
            raise MalformedCsrError(
                f"{len(data)} bytes is larger than the {MAX_CSR_BYTES}-byte limit"
            )
        if not data:
            raise MalformedCsrError("empty")
        try:
            if data.lstrip().startswith(b"-----BEGIN"):
                csr = x509.load_pem_x509_csr(bytes(data))
            else:
                csr = x509.load_der_x509_csr(bytes(data))
        except ValueError as err:
            raise MalformedCsrError("not a PEM or DER PKCS#10 certificate signing request") from err
    try:
        public_key = csr.public_key()
    except (ValueError, UnsupportedAlgorithm) as err:
        raise MalformedCsrError("its public key cannot be read") from err
    try:
        key_type_of(public_key)
    except ValueError as err:
        raise MalformedCsrError(f"wrong key type: {err}") from err
    try:
        hash_algorithm = csr.signature_hash_algorithm
    except UnsupportedAlgorithm as err:  # an OID cryptography does not know (found by fuzzing)
        raise MalformedCsrError("its signature algorithm is not supported") from err
    if hash_algorithm is None:
        raise MalformedCsrError("its signature algorithm is not supported")
    if hash_algorithm.name not in {"sha256", "sha384", "sha512"}:
        raise MalformedCsrError(f"signature hash {hash_algorithm.name} is not accepted")
    try:
        # Verifying with the key parsed above (rather than is_signature_valid) avoids parsing it twice.
        verify_signature(public_key, csr.signature, csr.tbs_certrequest_bytes, hash_algorithm)  # type: ignore[arg-type]
    except (InvalidSignature, UnsupportedAlgorithm) as err:
        raise MalformedCsrError("its signature does not verify with its own public key") from err
    return csr, public_key  # type: ignore[return-value]
