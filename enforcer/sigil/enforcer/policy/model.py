"""The policy resources as frozen value objects, validated once in ``parse()``.

Everything downstream (the index, the evaluator, the CLI) trusts these objects: a value that got this far
passed the schema of :mod:`sigil.enforcer.policy.resources` and the SPIFFE-ID rules, and defaults (a
ServiceAccount source's namespace, ``dryRun``) are resolved, so no later code reads raw YAML.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sigil.enforcer.policy.identity_sources import (
    ServiceAccountSource,
    Source,
    SpiffeSource,
    parse_source,
)
from sigil.enforcer.policy.network import PortRange, SourceNetwork, parse_network_attributes
from sigil.enforcer.policy.resources import CLUSTER_KIND, KINDS, NAMESPACED_KIND, document_schema
from sigil.enforcer.policy.schema import String, Where
from sigil.enforcer.policy.selector import LabelSelector

__all__ = [
    "AuthorizationPolicy",
    "ClusterAuthorizationPolicy",
    "ClusterTier",
    "Effect",
    "Policy",
    "Rule",
    "ServiceAccountSource",
    "Source",
    "SpiffeSource",
    "parse_policy",
]

_IN_MEMORY = Where("<memory>")
_EVERYTHING = LabelSelector()


class Effect(enum.Enum):
    """What a matching rule does. Namespaced policies spell it ALLOW/DENY, cluster rules Allow/Deny/Pass."""

    ALLOW = "allow"
    DENY = "deny"
    PASS = "pass"  # noqa: S105 -- an action name, not a password

    @classmethod
    def parse(cls, spelled: str) -> Effect:
        """``ALLOW``, ``Allow`` -> ALLOW (the schema already limited the spellings)."""
        return cls(spelled.lower())


class ClusterTier(enum.Enum):
    """Where a ClusterAuthorizationPolicy sits: before the namespace tier, or after it."""

    ADMIN = "Admin"
    BASELINE = "Baseline"


@dataclass(frozen=True, slots=True)
class Rule:
    """A rule: ``sources`` None = any peer, even without an SVID (``type: Any``, or sources omitted beside
    ports); () = nothing. ``not_sources`` (Sigil extension): the peer must match none of them. ``ports`` None
    (and no ``port_ranges``) = any port; otherwise the port must be in ``ports`` or in one of ``port_ranges``;
    either way it must be outside ``except_ports`` and ``except_ranges`` (Sigil extension). ``network`` None =
    any address, even an unknown one.

    ``effect`` is the cluster rule's own action, or the action of the AuthorizationPolicy holding the rule.
    """

    effect: Effect
    sources: tuple[Source, ...] | None = None
    ports: frozenset[int] | None = None
    port_ranges: tuple[PortRange, ...] = ()
    network: SourceNetwork | None = None
    not_sources: tuple[Source, ...] = ()
    except_ports: frozenset[int] = frozenset()
    except_ranges: tuple[PortRange, ...] = ()

    @property
    def every_port(self) -> bool:
        """True when the rule names no port (GEP-3779: omitted or ``ports: []``) and excepts none."""
        return (
            self.ports is None
            and not self.port_ranges
            and not self.except_ports
            and not self.except_ranges
        )

    def covers_port(self, port: int) -> bool:
        """True when the rule's port criterion admits ``port``."""
        if port in self.except_ports or any(port in span for span in self.except_ranges):
            return False
        if self.ports is None and not self.port_ranges:
            return True
        return port in (self.ports or ()) or any(port in span for span in self.port_ranges)


@dataclass(frozen=True, slots=True)
class AuthorizationPolicy:
    """A namespace owner's policy over pods of its own namespace (GEP-3779, plus DENY and dryRun).

    Sigil extensions: ``mesh`` (``spec.scope: Mesh``, Istio's root-namespace policies) makes the policy join
    the namespace tier of every namespace, its selector matched against the pods of each; ``target_ports``
    (``targetRefs[].ports``, Linkerd's ``Server``) limits it to connections to these ports (None = every port).
    """

    namespace: str
    name: str
    selector: LabelSelector
    action: Effect
    rules: tuple[Rule, ...] = ()
    dry_run: bool = False
    mesh: bool = False
    target_ports: frozenset[int] | None = None

    kind = NAMESPACED_KIND
    #: A namespace owner's own policy: relabelling their pods escapes nothing they did not write.
    relabel_escapable = False

    @property
    def ref(self) -> str:
        """``namespace/name``, as decisions and logs name the policy."""
        return f"{self.namespace}/{self.name}"

    @classmethod
    def parse(cls, raw: Mapping[str, Any], *, where: Where = _IN_MEMORY) -> AuthorizationPolicy:
        """Validate a whole resource (apiVersion, kind, metadata, spec) and build the policy."""
        document_schema(NAMESPACED_KIND).validate(raw, "", where)
        metadata, spec = raw["metadata"], raw["spec"]
        if "namespace" not in metadata:
            raise where.error(
                "metadata.namespace", "a namespace (AuthorizationPolicy is namespaced)"
            )
        namespace = metadata["namespace"]
        effect = Effect.parse(spec["action"])
        rules = tuple(
            _rule(rule, effect, namespace, f"spec.rules[{index}]", where)
            for index, rule in enumerate(spec.get("rules") or ())
        )
        target = spec["targetRefs"][0]
        return cls(
            namespace=namespace,
            name=metadata["name"],
            selector=LabelSelector.parse(target["selector"]),
            action=effect,
            rules=rules,
            dry_run=bool(spec.get("dryRun", False)),
            mesh=spec.get("scope", "Namespace") == "Mesh",
            target_ports=frozenset(target["ports"]) if "ports" in target else None,
        )


@dataclass(frozen=True, slots=True)
class ClusterAuthorizationPolicy:
    """The cluster admin's policy, modelled on AdminNetworkPolicy / BaselineAdminNetworkPolicy."""

    name: str
    tier: ClusterTier
    priority: int
    namespace_selector: LabelSelector
    pod_selector: LabelSelector = _EVERYTHING
    rules: tuple[Rule, ...] = ()
    dry_run: bool = False

    kind = CLUSTER_KIND

    @property
    def ref(self) -> str:
        """The policy's name, as decisions and logs name it."""
        return self.name

    @property
    def relabel_escapable(self) -> bool:
        """True for an Admin-tier policy that picks pods by labels: the pods' namespace owner can change those
        labels and so step out of it (a namespace's labels, by contrast, only the cluster admin can change)."""
        return self.tier is ClusterTier.ADMIN and not self.pod_selector.selects_everything

    @classmethod
    def parse(
        cls, raw: Mapping[str, Any], *, where: Where = _IN_MEMORY
    ) -> ClusterAuthorizationPolicy:
        """Validate a whole resource (apiVersion, kind, metadata, spec) and build the policy."""
        document_schema(CLUSTER_KIND).validate(raw, "", where)
        metadata, spec = raw["metadata"], raw["spec"]
        if "namespace" in metadata:
            raise where.error(
                "metadata.namespace",
                "no namespace (ClusterAuthorizationPolicy is cluster-scoped)",
                metadata["namespace"],
            )
        rules = tuple(
            _rule(rule, Effect.parse(rule["action"]), None, f"spec.rules[{index}]", where)
            for index, rule in enumerate(spec.get("rules") or ())
        )
        return cls(
            name=metadata["name"],
            tier=ClusterTier(spec["tier"]),
            priority=spec["priority"],
            namespace_selector=LabelSelector.parse(spec["namespaceSelector"]),
            pod_selector=LabelSelector.parse(spec.get("podSelector") or {}),
            rules=rules,
            dry_run=bool(spec.get("dryRun", False)),
        )


Policy = AuthorizationPolicy | ClusterAuthorizationPolicy

_KIND = String(enum=KINDS)


def parse_policy(raw: object, *, where: Where = _IN_MEMORY) -> Policy:
    """Build whichever policy ``raw`` describes, by its ``kind``; raises :class:`PolicyError`."""
    if not isinstance(raw, Mapping):
        raise where.error(
            "", "a policy resource (a mapping with apiVersion, kind, metadata, spec)", raw
        )
    if "kind" not in raw:
        raise where.error("kind", f"{_KIND.expected()} (required)")
    _KIND.validate(raw["kind"], "kind", where)
    if raw["kind"] == NAMESPACED_KIND:
        return AuthorizationPolicy.parse(raw, where=where)
    return ClusterAuthorizationPolicy.parse(raw, where=where)


def _rule(
    raw: Mapping[str, Any], effect: Effect, namespace: str | None, path: str, where: Where
) -> Rule:
    sources: tuple[Source, ...] | None = None
    # ``type: Any`` among the sources (OR-ed) matches every peer: the same as the GEP's omitted sources.
    if "sources" in raw and not any(source["type"] == "Any" for source in raw["sources"]):
        sources = tuple(
            parse_source(source, namespace, f"{path}.sources[{index}]", where)
            for index, source in enumerate(raw["sources"])
        )
    not_sources = tuple(
        parse_source(source, namespace, f"{path}.notSources[{index}]", where)
        for index, source in enumerate(raw.get("notSources") or ())
    )
    network = parse_network_attributes(
        raw.get("networkAttributes") or {}, f"{path}.networkAttributes", where
    )
    return Rule(
        effect,
        sources,
        network.ports,
        network.port_ranges,
        network.source,
        not_sources,
        network.except_ports,
        network.except_ranges,
    )
