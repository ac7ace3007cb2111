"""Istio's identity matchers (principals, namespaces, service accounts, trust domains) as Sigil sources.

Istio matches a peer's principal (its URI SAN) with Envoy string matchers that istiod builds
(istio/istio ``pilot/pkg/security/authz/model/generator.go`` and ``matcher/string.go``):

* ``principals`` get ``spiffe://`` in front: ``*`` is presence (any peer with an SVID), ``x*`` a prefix, ``*x``
  a suffix, anything else an exact match. A ``*`` anywhere else is a literal character, which no valid SPIFFE ID
  holds, so such a value never matches; neither does one written with its own ``spiffe://`` or holding any
  other character a SPIFFE ID cannot (a space, ``@``, ``%``).
* ``namespaces`` become the regex ``.*/ns/<ns>/.*`` over the whole ID (``*`` in the value turns into ``.*``), so
  they match any trust domain and any path holding ``/ns/<ns>/``.
* ``serviceAccounts`` (``ns/sa``, or ``sa`` in the policy's own namespace) become
  ``spiffe://.+/ns/<ns>/(.+/|)sa/<sa>(/.+)?``: any trust domain, and extra path segments around the pair.
* Before that, principals whose trust domain is the local one, an alias or the literal ``cluster.local`` are
  repeated for the local trust domain and every alias (``pilot/pkg/security/trustdomain/bundle.go``); only
  principals of exactly five ``/``-separated parts take part, as there.

Each becomes a Sigil ``SPIFFEPattern`` glob (``*`` matches any run of characters, ``/`` included), or an exact
``SPIFFE`` source, so the translation is exact. The globs rely on valid SPIFFE IDs having a non-empty trust
domain and no empty path segment; the namespace regex also matches a trust domain named ``ns``, which is why
it needs a second glob.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sigil.ca.errors import InvalidSpiffeIdError, InvalidTrustDomainError
from sigil.ca.spiffe_id import SpiffeId

__all__ = [
    "CLUSTER_LOCAL",
    "IdentityError",
    "TrustDomains",
    "namespace_sources",
    "principal_sources",
    "service_account_sources",
    "trust_domain_sources",
]

CLUSTER_LOCAL = "cluster.local"
"""Istio's default trust domain; in a policy it always means the local trust domain and its aliases."""

_NAMESPACE_PATTERN = re.compile(r"^[a-z0-9*]([-a-z0-9*]*[a-z0-9*])?$")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_ID_CHARACTERS = re.compile(
    r"^[A-Za-z0-9._/-]*$"
)  # SPIFFE ID, section 2: what a trust domain or path holds
_TRUST_DOMAIN = re.compile(r"^[a-z0-9._-]+$")

SourceDoc = dict[str, Any]


class IdentityError(ValueError):
    """An Istio identity value that Istio itself would reject; the message says which and why."""


@dataclass(frozen=True, slots=True)
class TrustDomains:
    """The local trust domain first, then its aliases (Istio's ``trustDomainAliases``)."""

    local: str
    aliases: tuple[str, ...] = ()

    @property
    def all(self) -> tuple[str, ...]:
        """The local trust domain and every alias, without repeats."""
        return tuple(dict.fromkeys((self.local, *self.aliases)))

    def expand_principal(self, principal: str) -> tuple[str, ...]:
        """The principals Istio enforces for ``principal`` once trust-domain aliases are applied."""
        parts = principal.split("/")
        if len(parts) != 5 or parts[0] == "*":
            return (principal,)
        domain = parts[0]
        if domain.startswith("*"):
            # A suffix pattern over the trust domain: Istio keeps it as written for every domain it matches.
            return (principal,)
        if domain != CLUSTER_LOCAL and domain not in self.all:
            return (principal,)
        rest = "/".join(parts[1:])
        return tuple(dict.fromkeys(f"{td}/{rest}" for td in self.all))

    def expand_domain(self, domain: str) -> tuple[str, ...]:
        """A ``trustDomains`` value: the local domain, an alias or ``cluster.local`` stands for all of them."""
        if domain == CLUSTER_LOCAL or domain in self.all:
            return self.all
        return (domain,)


def _pattern(glob: str) -> SourceDoc:
    if "*" not in glob:
        try:
            SpiffeId.parse(glob)
        except (InvalidSpiffeIdError, InvalidTrustDomainError):
            return {"type": "SPIFFEPattern", "spiffePattern": glob}
        return {"type": "SPIFFE", "spiffe": glob}
    return {"type": "SPIFFEPattern", "spiffePattern": glob}


def _never_matching_exact(glob: str) -> bool:
    try:
        spiffe_id = SpiffeId.parse(glob)
    except (InvalidSpiffeIdError, InvalidTrustDomainError):
        return True
    return spiffe_id.is_root


def principal_sources(value: str, domains: TrustDomains) -> tuple[SourceDoc, ...]:
    """The sources matching what Istio's ``principals`` value matches; () when it matches no valid SPIFFE ID."""
    if not value:
        raise IdentityError("an empty principal; write * for any peer with an SVID")
    found: list[SourceDoc] = []
    for principal in domains.expand_principal(value):
        glob = _principal_glob(principal)
        if glob is None:
            continue
        if "*" not in glob and _never_matching_exact(glob):
            continue
        source = _pattern(glob)
        if source not in found:
            found.append(source)
    return tuple(found)


def _principal_glob(principal: str) -> str | None:
    if principal == "*":
        return "spiffe://*"
    if principal.startswith("*"):
        body, glob = principal[1:], "spiffe://*{}"
    elif principal.endswith("*"):
        body, glob = principal[:-1], "spiffe://{}*"
    else:
        body, glob = principal, "spiffe://{}"
    if not _ID_CHARACTERS.match(body):
        return None  # a literal '*', or a character no valid SPIFFE ID holds: it never matches
    return glob.format(body)


def namespace_sources(value: str) -> tuple[SourceDoc, ...]:
    """The sources matching Istio's ``namespaces`` value (any trust domain, any path with ``/ns/<value>/``)."""
    if not _NAMESPACE_PATTERN.match(value):
        raise IdentityError(
            f"namespace {value!r} is not a namespace name (lowercase letters, digits, '-', and '*' for any run)"
        )
    return (
        {"type": "SPIFFEPattern", "spiffePattern": f"spiffe://*/ns/{value}/*"},
        # '.*/ns/<value>/.*' also matches the trust domain "ns" with a path starting at <value>.
        {"type": "SPIFFEPattern", "spiffePattern": f"spiffe://ns/{value}/*"},
    )


def service_account_sources(value: str, policy_namespace: str) -> tuple[SourceDoc, ...]:
    """The four globs of Istio's service-account regex for ``ns/sa`` (or ``sa`` of the policy's namespace)."""
    namespace, slash, account = value.partition("/")
    if not slash:
        namespace, account = policy_namespace, value
    if not _NAME.match(namespace) or not _NAME.match(account):
        raise IdentityError(
            f"service account {value!r} is not 'namespace/name' or 'name' (no wildcards are allowed)"
        )
    return tuple(
        {
            "type": "SPIFFEPattern",
            "spiffePattern": f"spiffe://*/ns/{namespace}/{middle}sa/{account}{tail}",
        }
        for middle in ("", "*/")
        for tail in ("", "/*")
    )


def trust_domain_sources(values: Sequence[str], domains: TrustDomains) -> tuple[SourceDoc, ...]:
    """One ``Authenticated`` source for Istio's ``trustDomains`` values (aliases and ``cluster.local`` expanded)."""
    expanded: list[str] = []
    for value in values:
        if not _TRUST_DOMAIN.match(value):
            raise IdentityError(
                f"trust domain {value!r} is not a trust domain name (lowercase letters, digits, '.', '-', '_')"
            )
        expanded.extend(d for d in domains.expand_domain(value) if d not in expanded)
    return ({"type": "Authenticated", "authenticated": {"trustDomains": expanded}},)
