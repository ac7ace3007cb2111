"""Kubernetes label selectors, matched the way the API server matches them.

Policies pick their target pods and namespaces by labels (GEP-3779 ``targetRefs[].selector``,
AdminNetworkPolicy's ``namespaceSelector``/``podSelector``). Semantics follow apimachinery's
``metav1.LabelSelectorAsSelector``: ``matchLabels`` and ``matchExpressions`` are AND-ed, ``{}`` selects
everything, ``NotIn`` and ``DoesNotExist`` also select objects that lack the key. The selector's schema (for files
and the CRDs, see :mod:`sigil.enforcer.policy.schema`) sits beside the value it parses into.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sigil.enforcer.policy.schema import Array, Check, Map, Object, String

__all__ = [
    "LABEL_KEYS",
    "LABEL_VALUES",
    "SELECTOR_SCHEMA",
    "LabelSelector",
    "Operator",
    "Requirement",
    "selector_schema",
]

# apimachinery's validation.IsQualifiedName and IsValidLabelValue, written with [.] instead of \. so that they
# survive being quoted inside CEL strings.
_LABEL_KEY = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
_LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
LABEL_KEYS = String(pattern=_LABEL_KEY, shape="a label key ([prefix/]name)", max_length=317)
LABEL_VALUES = String(
    pattern=_LABEL_VALUE, shape="a label value (at most 63 characters)", max_length=63
)


def _values_match_operator(requirement: Mapping[str, Any]) -> str | None:
    values = requirement.get("values") or []
    if requirement.get("operator") in ("In", "NotIn"):
        return None if values else "values"
    return "values" if values else None


def selector_schema(*, max_expressions: int = 16) -> Object:
    """A LabelSelector's schema; a selector nested deeper (an AllOf member's) allows fewer expressions, since
    the API server's CEL cost estimate multiplies the bounds of every enclosing list."""
    return Object(
        description="A Kubernetes LabelSelector; {} selects everything.",
        fields={
            "matchLabels": Map(
                keys=LABEL_KEYS, values=LABEL_VALUES, description="Labels to match."
            ),
            "matchExpressions": Array(
                max_items=max_expressions,
                items=Object(
                    fields={
                        "key": LABEL_KEYS,
                        "operator": String(enum=("In", "NotIn", "Exists", "DoesNotExist")),
                        "values": Array(LABEL_VALUES, max_items=64),
                    },
                    required=("key", "operator"),
                    checks=(
                        Check(
                            cel="self.operator in ['In', 'NotIn'] ? (has(self.values) && size(self.values) > 0)"
                            " : (!has(self.values) || size(self.values) == 0)",
                            message="values must be non-empty for In and NotIn and empty otherwise",
                            expected="values non-empty for In and NotIn, empty for Exists and DoesNotExist",
                            failing=_values_match_operator,
                        ),
                    ),
                ),
            ),
        },
    )


SELECTOR_SCHEMA = selector_schema()


class Operator(enum.Enum):
    """A ``matchExpressions`` operator."""

    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


@dataclass(frozen=True, slots=True)
class Requirement:
    """One ``matchExpressions`` entry."""

    key: str
    operator: Operator
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """True when ``labels`` satisfy this requirement."""
        value = labels.get(self.key)
        if self.operator is Operator.IN:
            return value is not None and value in self.values
        if self.operator is Operator.NOT_IN:
            return value is None or value not in self.values
        if self.operator is Operator.EXISTS:
            return value is not None
        return value is None


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """A label selector; the default one (``{}``) selects everything."""

    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[Requirement, ...] = ()

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> LabelSelector:
        """Build a selector from a mapping that already passed the schema."""
        labels = tuple(sorted((str(k), str(v)) for k, v in (raw.get("matchLabels") or {}).items()))
        expressions = tuple(
            Requirement(
                key=str(item["key"]),
                operator=Operator(item["operator"]),
                values=frozenset(str(v) for v in item.get("values") or ()),
            )
            for item in raw.get("matchExpressions") or ()
        )
        return cls(labels, expressions)

    @property
    def selects_everything(self) -> bool:
        """True for ``{}``."""
        return not self.match_labels and not self.match_expressions

    def matches(self, labels: Mapping[str, str]) -> bool:
        """True when ``labels`` are selected."""
        for key, value in self.match_labels:
            if labels.get(key) != value:
                return False
        return all(requirement.matches(labels) for requirement in self.match_expressions)

    def to_dict(self) -> dict[str, Any]:
        """The selector as the ``LabelSelector`` mapping it was parsed from (for explain output)."""
        raw: dict[str, Any] = {}
        if self.match_labels:
            raw["matchLabels"] = dict(self.match_labels)
        if self.match_expressions:
            raw["matchExpressions"] = [
                {"key": r.key, "operator": r.operator.value, "values": sorted(r.values)}
                for r in self.match_expressions
            ]
        return raw
