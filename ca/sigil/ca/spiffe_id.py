"""SPIFFE IDs and trust domain names, held to every rule of the SPIFFE-ID standard.

py-spiffe's ``SpiffeId`` lowercases the trust domain it is given; an issuer must not rewrite an identity it was
asked for, so Sigil parses strictly and names the broken rule instead
(https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE-ID.md, sections 2 and 2.4).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cryptography import x509

from sigil.ca.errors import InvalidSpiffeIdError, InvalidTrustDomainError, UriSanCountError

__all__ = ["MAX_ID_BYTES", "MAX_TRUST_DOMAIN_BYTES", "SpiffeId", "TrustDomain", "spiffe_id_of"]

SCHEME = "spiffe://"
MAX_ID_BYTES = 2048
MAX_TRUST_DOMAIN_BYTES = 255

_TD_CHARS = re.compile(r"[a-z0-9._-]+")
_SEGMENT_CHARS = re.compile(r"[A-Za-z0-9._-]+")
# What nearly every ID looks like, in one match: ASCII only, so its length in characters is its length in bytes.
# A match still needs the length limits and has no '.' or '..' segment only when it holds no "/." at all; any
# other value takes the rule-by-rule path, which names the rule it breaks.
_PLAIN_ID = re.compile(r"spiffe://([a-z0-9._-]+)((?:/[A-Za-z0-9._-]+)*)")


def _trust_domain_rule(name: str) -> str | None:
    """The first trust-domain rule ``name`` breaks, or None."""
    if not name:
        return "the trust domain is empty"
    if "@" in name:
        return "userinfo is not allowed in a SPIFFE ID"
    if name.startswith("[") or ":" in name:
        return "a port or an IPv6 address is not allowed as a trust domain"
    if "%" in name:
        return "percent-encoding is not allowed in a trust domain"
    if len(name.encode()) > MAX_TRUST_DOMAIN_BYTES:
        return f"a trust domain is at most {MAX_TRUST_DOMAIN_BYTES} bytes"
    if _TD_CHARS.fullmatch(name) is None:
        if _TD_CHARS.fullmatch(name.lower()) is not None:
            return "a trust domain must be lowercase"
        return "a trust domain may hold only the characters a-z, 0-9, '.', '-' and '_'"
    return None


def _path_rule(path: str) -> str | None:
    """The first path rule ``path`` (empty, or starting with '/') breaks, or None."""
    if not path:
        return None
    if path.endswith("/"):
        return "the path must not end with '/'"
    for segment in path[1:].split("/"):
        if not segment:
            return "path segments must not be empty ('//')"
        if segment in (".", ".."):
            return "path segments must not be '.' or '..'"
        if "%" in segment:
            return "percent-encoding is not allowed in the path"
        if _SEGMENT_CHARS.fullmatch(segment) is None:
            return "path segments may hold only the characters A-Z, a-z, 0-9, '.', '-' and '_'"
    return None


@dataclass(frozen=True, slots=True, order=True)
class TrustDomain:
    """A trust domain name such as ``example.org``."""

    name: str

    def __post_init__(self) -> None:
        rule = _trust_domain_rule(self.name)
        if rule is not None:
            raise InvalidTrustDomainError(self.name, rule)

    @classmethod
    def parse(cls, value: str) -> TrustDomain:
        """Parse ``example.org`` or ``spiffe://example.org`` (an ID with no path); else :class:`InvalidTrustDomainError`."""
        if value.startswith(SCHEME):
            try:
                spiffe_id = SpiffeId.parse(value)
            except InvalidSpiffeIdError as err:
                # Callers catch the trust domain's error (a policy's trustDomains, a flag): found by fuzzing.
                raise InvalidTrustDomainError(value, err.rule) from err
            if spiffe_id.path:
                raise InvalidTrustDomainError(value, "a trust domain ID has no path")
            return spiffe_id.trust_domain
        if "://" in value:
            raise InvalidTrustDomainError(value, "the scheme must be 'spiffe'")
        return cls(value)

    @property
    def id(self) -> SpiffeId:
        """The trust domain's own SPIFFE ID, ``spiffe://NAME``, as CA certificates carry it."""
        return SpiffeId(self, "")

    def spiffe_id(self, *segments: str) -> SpiffeId:
        """The SPIFFE ID of this trust domain with the given path segments (each one checked alone)."""
        for segment in segments:
            if "/" in segment:
                raise InvalidSpiffeIdError(segment, "a path segment must not contain '/'")
        return SpiffeId(self, "".join(f"/{s}" for s in segments))

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True, order=True)
class SpiffeId:
    """A SPIFFE ID: a trust domain and a path that is empty or starts with '/'."""

    trust_domain: TrustDomain
    path: str

    def __post_init__(self) -> None:
        if self.path and not self.path.startswith("/"):
            raise InvalidSpiffeIdError(self.path, "a path must start with '/'")
        rule = _path_rule(self.path)
        if rule is not None:
            raise InvalidSpiffeIdError(f"{SCHEME}{self.trust_domain}{self.path}", rule)
        if len(str(self).encode()) > MAX_ID_BYTES:
            raise InvalidSpiffeIdError(str(self)[:64] + "...", f"longer than {MAX_ID_BYTES} bytes")

    @classmethod
    def parse(cls, value: str) -> SpiffeId:
        """Parse a SPIFFE ID, raising :class:`InvalidSpiffeIdError` naming the first broken rule."""
        if not isinstance(value, str):
            raise TypeError(f"a SPIFFE ID is a str, not {type(value).__name__}")
        plain = _PLAIN_ID.fullmatch(value)
        if plain is not None and len(value) <= MAX_ID_BYTES and "/." not in value:
            name, path = plain.groups()
            if len(name) <= MAX_TRUST_DOMAIN_BYTES:
                return _checked_id(name, path)
        return cls.parse_by_rules(value)

    @classmethod
    def parse_by_rules(cls, value: str) -> SpiffeId:
        """:meth:`parse` one rule at a time (what it does for any value not plainly valid): the same result."""
        if not value:
            raise InvalidSpiffeIdError(value, "the SPIFFE ID is empty")
        if len(value.encode()) > MAX_ID_BYTES:
            raise InvalidSpiffeIdError(value[:64] + "...", f"longer than {MAX_ID_BYTES} bytes")
        if not value.startswith(SCHEME):
            if value.lower().startswith(SCHEME):
                rule = "the scheme must be written 'spiffe' in lowercase"
            else:
                rule = "the scheme must be 'spiffe' followed by '://'"
            raise InvalidSpiffeIdError(value, rule)
        if "?" in value:
            raise InvalidSpiffeIdError(value, "a query is not allowed")
        if "#" in value:
            raise InvalidSpiffeIdError(value, "a fragment is not allowed")
        rest = value[len(SCHEME) :]
        authority, slash, path = rest.partition("/")
        td_rule = _trust_domain_rule(authority)
        if td_rule is not None:
            raise InvalidSpiffeIdError(value, td_rule)
        path = slash + path
        path_rule = _path_rule(path)
        if path_rule is not None:
            raise InvalidSpiffeIdError(value, path_rule)
        return cls(TrustDomain(authority), path)

    @property
    def is_root(self) -> bool:
        """True for the trust domain's own ID (no path); such an ID never names a workload."""
        return not self.path

    def is_member_of(self, trust_domain: TrustDomain) -> bool:
        """True when this ID belongs to ``trust_domain``."""
        return self.trust_domain == trust_domain

    def __str__(self) -> str:
        return f"{SCHEME}{self.trust_domain.name}{self.path}"


def _checked_id(name: str, path: str) -> SpiffeId:
    """A SpiffeId of parts that :data:`_PLAIN_ID` and the limits have checked, built without checking again
    (verifying peers parses an ID per new certificate; the dataclasses' own checks would repeat every rule)."""
    trust_domain = object.__new__(TrustDomain)
    object.__setattr__(trust_domain, "name", name)
    spiffe_id = object.__new__(SpiffeId)
    object.__setattr__(spiffe_id, "trust_domain", trust_domain)
    object.__setattr__(spiffe_id, "path", path)
    return spiffe_id


def spiffe_id_of(certificate: x509.Certificate) -> SpiffeId:
    """The SPIFFE ID of an X509-SVID: its one URI SAN, parsed strictly.

    X509-SVID.md §2 allows exactly one URI SAN, so none or several raise :class:`UriSanCountError` (with the count,
    which verifiers report apart) and a URI that is no SPIFFE ID raises :class:`InvalidSpiffeIdError`. Whether the
    certificate is otherwise a valid SVID (chain, key usage, validity) is the verifier's business, not this one's.
    """
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise UriSanCountError(0) from None
    uris = names.get_values_for_type(x509.UniformResourceIdentifier)
    if len(uris) != 1:
        raise UriSanCountError(len(uris))
    return SpiffeId.parse(uris[0])
