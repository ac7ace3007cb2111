"""Certificate signing requests as the CA accepts them.

The CSR proves possession of the key and supplies the public key; nothing else in it is trusted. Identity, SANs and
extensions come from the CA's decision (https://github.com/spiffe/spiffe/blob/main/standards/X509-SVID.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm

from sigil.ca.errors import MalformedCsrError
from sigil.ca.keys import PublicKey, key_type_of, public_key_der, verify_signature
from sigil.ca.leaf_template import Leaf, LeafTemplate, der_span

__all__ = ["MAX_CSR_BYTES", "parse_csr", "sign_per_csr", "subject_key_der", "verify_csr_keys"]

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


#: The SubjectPublicKeyInfo of an uncompressed P-256 or P-384 point, up to the point: AlgorithmIdentifier with the
#: named curve, then the BIT STRING header and the 0x04 that starts an uncompressed point (RFC 5480 §2), with the
#: length of the whole encoding.
_CANONICAL_EC_SPKI = {
    91: bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d03010703420004"),
    120: bytes.fromhex("3076301006072a8648ce3d020106052b8104002203620004"),
}


def subject_key_der(csr: x509.CertificateSigningRequest, public_key: PublicKey) -> bytes:
    """The CSR's key as SubjectPublicKeyInfo DER, exactly as ``public_key_der`` would write it.

    An EC key in its canonical form (named curve, uncompressed point) is taken as the CSR carries it, which spares
    re-encoding it (about a tenth of the cost of minting an SVID); any other form is re-encoded from the key.
    """
    info = csr.tbs_certrequest_bytes
    at, _ = der_span(info, 0)  # CertificationRequestInfo SEQUENCE
    _, at = der_span(info, at)  # version
    _, at = der_span(info, at)  # subject
    _, end = der_span(info, at)  # subjectPKInfo
    spki = info[at:end]
    prefix = _CANONICAL_EC_SPKI.get(len(spki))
    if prefix is not None and spki.startswith(prefix):
        return spki
    return public_key_der(public_key)


def verify_csr_keys(csrs: Sequence[bytes]) -> list[bytes | str]:
    """Each CSR's verified key as SubjectPublicKeyInfo DER, or the reason it is refused.

    Plain bytes and strings, so that the answer crosses back from a signing worker process as it is; the caller
    turns a reason into :class:`MalformedCsrError` again.
    """
    keys: list[bytes | str] = []
    for data in csrs:
        try:
            keys.append(subject_key_der(*parse_csr(data)))
        except MalformedCsrError as err:
            keys.append(err.reason)
    return keys


def sign_per_csr(
    template: LeafTemplate, items: Sequence[tuple[bytes | None, Sequence[tuple[Any, ...]]]]
) -> list[list[bytes] | str]:
    """Each item's rows (a :class:`Leaf`'s fields in order) signed by ``template``, as Certificate DER.

    An item that comes with a CSR has it verified first, and its rows are signed over the CSR's key (their own
    key is a placeholder); a CSR that does not verify answers its reason, and nothing of its item is signed. The
    one check-and-sign of an agent's batch, in a signing worker or in the CA's thread.
    """
    # Every CSR first, then every signature: checking and signing item by item cost about 6% more CPU per SVID
    # on this machine (paired runs of 50 P-256 CSRs).
    keys = iter(verify_csr_keys([csr for csr, _ in items if csr is not None]))
    answers: list[list[bytes] | str] = []
    for csr, rows in items:
        key = None if csr is None else next(keys)
        if isinstance(key, str):
            answers.append(key)
        elif key is None:
            answers.append(template.certificates([Leaf(*row) for row in rows]))
        else:
            answers.append(
                template.certificates(
                    [
                        Leaf(serial, before, after, key, uri, dns)
                        for serial, before, after, _, uri, dns in rows
                    ]
                )
            )
    return answers
