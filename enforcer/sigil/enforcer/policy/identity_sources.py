"""Who a rule names: every kind of source, and how one is read from its document.

GEP-3779 names two kinds: ``ServiceAccount`` (:class:`ServiceAccountSource`) and ``SPIFFE``
(:class:`SpiffeSource`). The others are Sigil extensions, each documented as such:

* :class:`AuthenticatedSource` (``type: Authenticated``, authz.md 7.1): any peer whose SVID verified against its
  own trust domain's bundle, local or federated, optionally limited to named trust domains.
* :class:`SameNamespaceSource` (``type: SameNamespace``): local peers of the target's own namespace, so that one
  ``ClusterAuthorizationPolicy`` can isolate every namespace. In an ``AuthorizationPolicy`` it is the same as
  ``serviceAccount: {name: "*"}``.
* :class:`NamespacesSource` (``type: Namespaces``): local peers whose namespace's labels match a selector, as
  AdminNetworkPolicy's ``namespaces`` peer does.
* :class:`SpiffePatternSource` (``type: SPIFFEPattern``): a glob over a peer's whole SPIFFE ID, in which ``*``
  matches any run of characters, ``/`` included. Istio matches principals by exact value, prefix, suffix and
  presence, and its ``namespaces``/``serviceAccounts`` across every trust domain
  (``pilot/pkg/security/authz/model/generator.go``); globs say all of these.
* :class:`AllOfSource` (``type: AllOf``): every listed source must match. Fields within one Istio ``source``
  are AND-ed, and a Linkerd ``AuthorizationPolicy``'s ``requiredAuthenticationRefs`` must all match.

A peer's namespace is read from its ID under the workload ID template (:mod:`.peer_ids`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sigil.ca.errors import InvalidSpiffeIdError, InvalidTrustDomainError
from sigil.ca.spiffe_id import SpiffeId, TrustDomain
from sigil.enforcer.policy.schema import Where
from sigil.enforcer.policy.selector import LabelSelector

__all__ = [
    "AllOfSource",
    "AuthenticatedSource",
    "NamespacesSource",
    "SameNamespaceSource",
    "ServiceAccountSource",
    "Source",
    "SpiffePatternSource",
    "SpiffeSource",
    "parse_source",
]


@dataclass(frozen=True, slots=True)
class ServiceAccountSource:
    """Peers holding the SVID of a ServiceAccount of the local trust domain; ``name`` ``*`` = any in ``namespace``."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"serviceAccount {self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class SpiffeSource:
    """Peers with exactly ``spiffe_id``, or (``prefix``, Sigil's extension) any ID strictly below its path."""

    spiffe_id: SpiffeId
    prefix: bool = False

    @classmethod
    def parse(cls, value: str) -> SpiffeSource:
        """Parse ``spiffe://td/path`` or ``spiffe://td/path/*``; raises :class:`InvalidSpiffeIdError`."""
        if value.endswith("/*"):
            return cls(SpiffeId.parse(value[:-2]), prefix=True)
        spiffe_id = SpiffeId.parse(value)
        if spiffe_id.is_root:
            raise InvalidSpiffeIdError(value, "a trust domain's own ID never names a workload")
        return cls(spiffe_id)

    def __str__(self) -> str:
        return f"{self.spiffe_id}/*" if self.prefix else str(self.spiffe_id)


@dataclass(frozen=True, slots=True)
class AuthenticatedSource:
    """Any peer holding a verified SVID; ``trust_domains`` None = of any domain the enforcer trusts."""

    trust_domains: frozenset[str] | None = None

    def __str__(self) -> str:
        if self.trust_domains is None:
            return "any authenticated peer"
        return "any authenticated peer of " + ", ".join(sorted(self.trust_domains))


@dataclass(frozen=True, slots=True)
class SameNamespaceSource:
    """Local peers whose ID names the target pod's own namespace."""

    def __str__(self) -> str:
        return "peers of the target's namespace"


@dataclass(frozen=True, slots=True)
class NamespacesSource:
    """Local peers whose namespace has labels matching ``selector``."""

    selector: LabelSelector

    def __str__(self) -> str:
        return f"peers of namespaces matching {self.selector.to_dict() or '{}'}"


@dataclass(frozen=True, slots=True)
class SpiffePatternSource:
    """Peers holding a verified SVID whose whole ID matches ``pattern``: ``*`` is any run of characters
    (none, and ``/``, included); every other character is literal. ``spiffe://*`` is any peer with an SVID."""

    pattern: str
    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        regex = ".*".join(re.escape(part) for part in self.pattern.split("*"))
        object.__setattr__(self, "_regex", re.compile(regex, re.DOTALL))

    def matches(self, spiffe_id: str) -> bool:
        """True when ``spiffe_id`` (as ``spiffe://td/path``) matches the whole pattern."""
        return self._regex.fullmatch(spiffe_id) is not None

    def __str__(self) -> str:
        return f"SPIFFE IDs matching {self.pattern}"


@dataclass(frozen=True, slots=True)
class AllOfSource:
    """Peers that match every one of ``members`` (none of which is itself an AllOf)."""

    members: tuple[Source, ...]

    def __str__(self) -> str:
        return "all of (" + "; ".join(str(member) for member in self.members) + ")"


Source = (
    ServiceAccountSource
    | SpiffeSource
    | AuthenticatedSource
    | SameNamespaceSource
    | NamespacesSource
    | SpiffePatternSource
    | AllOfSource
)


def parse_source(raw: Mapping[str, Any], namespace: str | None, path: str, where: Where) -> Source:
    """One source that passed the schema (not ``type: Any``, which the rule reads); ``namespace`` is the
    policy's own (None for a cluster policy); raises :class:`PolicyError`."""
    kind = raw["type"]
    if kind == "Any":
        raise where.error(
            f"{path}.type", "a source that can be combined or negated (not Any)", kind
        )
    if kind == "SPIFFE":
        try:
            return SpiffeSource.parse(raw["spiffe"])
        except InvalidSpiffeIdError as err:
            raise where.error(f"{path}.spiffe", f"a SPIFFE ID ({err.rule})", raw["spiffe"]) from err
    if kind == "SPIFFEPattern":
        return SpiffePatternSource(raw["spiffePattern"])
    if kind == "AllOf":
        return AllOfSource(
            tuple(
                parse_source(member, namespace, f"{path}.allOf[{index}]", where)
                for index, member in enumerate(raw["allOf"])
            )
        )
    if kind == "Authenticated":
        return _authenticated(raw.get("authenticated") or {}, f"{path}.authenticated", where)
    if kind == "SameNamespace":
        return SameNamespaceSource()
    if kind == "Namespaces":
        return NamespacesSource(LabelSelector.parse(raw["namespaces"]["selector"]))
    account = raw["serviceAccount"]
    # GEP-3779: the namespace defaults to the policy's own; cluster policies must name it (schema-enforced).
    return ServiceAccountSource(
        namespace=account.get("namespace") or str(namespace), name=account["name"]
    )


def _authenticated(raw: Mapping[str, Any], path: str, where: Where) -> AuthenticatedSource:
    if "trustDomains" not in raw:
        return AuthenticatedSource()
    domains = set()
    for index, name in enumerate(raw["trustDomains"]):
        try:
            domains.add(TrustDomain.parse(name).name)
        except InvalidTrustDomainError as err:
            raise where.error(
                f"{path}.trustDomains[{index}]", f"a trust domain name ({err.rule})", name
            ) from err
    return AuthenticatedSource(frozenset(domains))
