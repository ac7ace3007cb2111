"""What the evaluator is asked (:class:`Target`) and what it answers (:class:`Decision`).

Users' first complaint about mesh authorization is an opaque "RBAC: access denied" (istio#39802, istio#23526):
so a decision carries the tier, policy and rule that decided, every other rule that matched when asked to
explain, and what dry-run policies would have done (the shadow pass), in a shape the CLI prints as JSON.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from sigil.enforcer.errors import RequestError
from sigil.enforcer.policy.model import Effect

__all__ = ["NAMESPACE_NAME_LABEL", "Decision", "Match", "Target", "Tier", "Verdict"]

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_LABEL_KEY = re.compile(
    r"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
)
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?")


class Tier(enum.Enum):
    """The step of authz.md part 7 that decided."""

    ADMIN = "admin"
    NAMESPACE = "namespace"
    BASELINE = "baseline"
    DEFAULT = "default"


class Target:
    """The pod a connection goes to: its namespace and labels, with a precomputed cache key.

    An enforcer serves one pod, whose labels rarely change, so the key is built once and every decision
    finds the pod's compiled view with a single dict lookup.
    """

    __slots__ = ("key", "labels", "namespace")

    def __init__(self, namespace: str, labels: Mapping[str, str] | None = None) -> None:
        items = sorted((labels or {}).items())
        self.namespace = namespace
        self.labels: Mapping[str, str] = MappingProxyType(dict(items))
        self.key = "\0".join([namespace, *(f"{k}={v}" for k, v in items)])

    @classmethod
    def parse(cls, namespace: str, labels: Mapping[str, str] | None = None) -> Target:
        """A target whose namespace and labels follow Kubernetes' rules; raises :class:`RequestError`."""
        if _DNS_LABEL.fullmatch(namespace) is None:
            raise RequestError("namespace", namespace, "not a namespace name (a DNS label)")
        for key, value in (labels or {}).items():
            if _LABEL_KEY.fullmatch(key) is None:
                raise RequestError("label key", key, "not a Kubernetes label key")
            if _LABEL_VALUE.fullmatch(value) is None:
                raise RequestError(
                    "label value", value, f"not a Kubernetes label value (for {key})"
                )
        return cls(namespace, labels)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Target) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __repr__(self) -> str:
        return f"Target({self.namespace!r}, {dict(self.labels)!r})"


@dataclass(frozen=True, slots=True)
class Match:
    """A rule that matched the connection: where it sits and what it would do."""

    tier: Tier
    policy: str
    rule: int
    effect: Effect
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The match as JSON-ready data."""
        return {
            "tier": self.tier.value,
            "policy": self.policy,
            "rule": self.rule,
            "action": self.effect.value,
            "dry_run": self.dry_run,
        }


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of one evaluation pass: allowed or not, and who decided (None when no single rule did).

    ``audit`` marks a connection the ``audit`` default let through that ``deny`` would have refused.
    """

    allowed: bool
    tier: Tier
    policy: str | None
    rule: int | None
    reason: str
    audit: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The verdict as JSON-ready data, with the keys the CLI promises."""
        data: dict[str, Any] = {
            "decision": "allowed" if self.allowed else "denied",
            "tier": self.tier.value,
            "policy": self.policy,
            "rule": self.rule,
            "reason": self.reason,
        }
        if self.audit:
            data["audit"] = {"would": "denied"}
        return data


@dataclass(frozen=True, slots=True)
class Decision:
    """The enforced verdict, plus what ``--explain`` shows.

    ``matches`` lists every enforcing rule that matched (the decider included) and is filled only when the
    evaluator was asked to explain. ``dry_run`` lists matching rules of dry-run policies and ``shadow`` is the
    verdict had those policies been enforced; both are computed whenever a dry-run policy selects the target,
    and neither ever changes ``allowed``.
    """

    verdict: Verdict
    matches: tuple[Match, ...] = ()
    dry_run: tuple[Match, ...] = ()
    shadow: Verdict | None = None
    #: True when the connection may proceed (the verdict's, copied: a slot reads several times faster than a
    #: property, and every caller reads it on every decision).
    allowed: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "allowed", self.verdict.allowed)

    @property
    def tier(self) -> Tier:
        """The tier that decided."""
        return self.verdict.tier

    @property
    def policy(self) -> str | None:
        """The deciding policy (``namespace/name`` or a cluster policy's name), None for defaults."""
        return self.verdict.policy

    @property
    def rule(self) -> int | None:
        """The deciding rule's index in its policy, None when no single rule decided."""
        return self.verdict.rule

    @property
    def reason(self) -> str:
        """One sentence saying why."""
        return self.verdict.reason

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``decision``, ``tier``, ``policy``, ``rule``, ``reason``, ``dry_run``, ``matches``."""
        data = self.verdict.to_dict()
        # dry_run holds the shadow verdict (decision None when no dry-run policy selects the target).
        shadow: dict[str, Any] = (
            {"decision": None} if self.shadow is None else self.shadow.to_dict()
        )
        shadow["matches"] = [match.to_dict() for match in self.dry_run]
        data["dry_run"] = shadow
        data["matches"] = [match.to_dict() for match in self.matches]
        return data
