"""A small declarative schema language: one description yields both the CRD schema and the file validator.

Kubernetes validates custom resources against an OpenAPI v3 *structural* schema plus CEL rules
(https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#specifying-a-structural-schema).
Sigil also reads the same resources from YAML files, where no API server checks them. Writing the schema twice
would let the two drift, so each node here renders itself as OpenAPI (``openapi()``) and checks a parsed YAML
value the same way (``validate()``); a cross-field rule carries its CEL expression for the API server and a
Python twin for files. Unknown fields are refused wherever Sigil reads a resource (files, the admin API, the
CRDs as the issuer receives them). The API server, by contrast, prunes unknown fields unless the client asked for
strict field validation, so a field whose absence would widen a rule gets a CEL check that makes its absence
visible (see ``resources``): pruning a misspelled field can then only make the API server refuse the resource.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sigil.enforcer.errors import PolicyError, UnknownFieldError

__all__ = ["Array", "Boolean", "Check", "Integer", "Map", "Node", "Object", "String", "Where"]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class Where:
    """Where a value came from, so errors can name the file and the document within it."""

    file: str
    document: int | None = None

    def error(self, path: str, expected: str, value: object = ...) -> PolicyError:
        """A :class:`PolicyError` for ``path``; ``value`` left out means the field is absent."""
        found = None if value is ... else _render(value)
        return PolicyError(self.file, path, expected, document=self.document, found=found)

    def unknown(self, path: str, known: tuple[str, ...]) -> UnknownFieldError:
        """An :class:`UnknownFieldError` for the field at ``path``."""
        return UnknownFieldError(self.file, path, known, document=self.document)


@functools.lru_cache(maxsize=4096)  # the same fields of the same kinds, document after document
def _join(path: str, key: str) -> str:
    """``spec`` + ``rules`` -> ``spec.rules``; keys that are not identifiers are quoted."""
    if _IDENTIFIER.fullmatch(key) is None:
        return f'{path}["{key}"]'
    return f"{path}.{key}" if path else key


def _render(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


@dataclass(frozen=True, slots=True)
class Check:
    """A rule across fields: ``cel`` and ``message`` for the API server, ``failing`` for files.

    ``failing`` returns the path (relative to the object, "" for the object itself) of the field that breaks
    the rule, or None when the object keeps it; ``expected`` completes "expected ..." in the file's error.
    """

    cel: str
    message: str
    expected: str
    failing: Callable[[Mapping[str, Any]], str | None]


class Node:
    """One node of a schema."""

    description: str

    def openapi(self) -> dict[str, Any]:
        """This node as an OpenAPI v3 structural schema."""
        raise NotImplementedError

    def validate(self, value: object, path: str, where: Where) -> None:
        """Raise :class:`PolicyError` naming ``path`` when ``value`` breaks this node."""
        raise NotImplementedError

    def _base(self, kind: str) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": kind}
        if self.description:
            schema["description"] = self.description
        return schema


@dataclass(frozen=True, slots=True)
class String(Node):
    """A string, optionally an enum or a pattern; ``shape`` says in words what the pattern wants."""

    description: str = ""
    enum: tuple[str, ...] = ()
    pattern: str | None = None
    shape: str | None = None
    max_length: int = 253
    # Compiled once: re.search(pattern, ...) looks its cache up on every call, several per document.
    _search: Callable[[str], re.Match[str] | None] | None = field(
        init=False, repr=False, compare=False, default=None
    )

    def __post_init__(self) -> None:
        if self.pattern is not None:
            object.__setattr__(self, "_search", re.compile(self.pattern).search)

    def openapi(self) -> dict[str, Any]:
        schema = self._base("string")
        if self.enum:
            schema["enum"] = list(self.enum)
        else:
            schema["maxLength"] = self.max_length
        if self.pattern is not None:
            schema["pattern"] = self.pattern
        return schema

    def expected(self) -> str:
        """What a valid value looks like, in words."""
        if self.enum:
            return "one of " + ", ".join(repr(choice) for choice in self.enum)
        return self.shape or "a string"

    def validate(self, value: object, path: str, where: Where) -> None:
        if not isinstance(value, str):
            raise where.error(path, self.expected(), value)
        if self.enum and value not in self.enum:
            raise where.error(path, self.expected(), value)
        if len(value) > self.max_length:
            raise where.error(path, f"at most {self.max_length} characters", value)
        if self._search is not None and self._search(value) is None:
            raise where.error(path, self.expected(), value)


@dataclass(frozen=True, slots=True)
class Integer(Node):
    """An integer within bounds (YAML booleans are not integers, although Python thinks so)."""

    description: str = ""
    minimum: int = 0
    maximum: int = 2**31 - 1

    def openapi(self) -> dict[str, Any]:
        schema = self._base("integer")
        schema["format"] = "int32"
        schema["minimum"] = self.minimum
        schema["maximum"] = self.maximum
        return schema

    def validate(self, value: object, path: str, where: Where) -> None:
        in_range = (
            isinstance(value, int)
            and not isinstance(value, bool)
            and self.minimum <= value <= self.maximum
        )
        if not in_range:
            raise where.error(path, f"an integer from {self.minimum} to {self.maximum}", value)


@dataclass(frozen=True, slots=True)
class Boolean(Node):
    """true or false."""

    description: str = ""

    def openapi(self) -> dict[str, Any]:
        return self._base("boolean")

    def validate(self, value: object, path: str, where: Where) -> None:
        if not isinstance(value, bool):
            raise where.error(path, "true or false", value)


@dataclass(frozen=True, slots=True)
class Array(Node):
    """A list of items; ``max_items`` is required because CEL cost estimation needs a bound."""

    items: Node
    max_items: int
    description: str = ""
    min_items: int = 0

    def openapi(self) -> dict[str, Any]:
        schema = self._base("array")
        schema["items"] = self.items.openapi()
        if self.min_items:
            schema["minItems"] = self.min_items
        schema["maxItems"] = self.max_items
        return schema

    def validate(self, value: object, path: str, where: Where) -> None:
        if not isinstance(value, list):
            raise where.error(path, "a list", value)
        if not self.min_items <= len(value) <= self.max_items:
            expected = f"a list of {self.min_items} to {self.max_items} items"
            raise where.error(path, expected, f"{len(value)} items")
        for index, item in enumerate(value):
            self.items.validate(item, f"{path}[{index}]", where)


@dataclass(frozen=True, slots=True)
class Map(Node):
    """A string-to-string mapping such as ``matchLabels``; keys are checked by ``keys``.

    Only files get the key check: OpenAPI cannot constrain map keys, and a CEL ``self.all(k, k.matches(...))``
    over keys of unbounded length would exceed the API server's CEL cost budget and get the CRD refused.
    """

    keys: String
    values: String
    description: str = ""
    max_properties: int = 64

    def openapi(self) -> dict[str, Any]:
        schema = self._base("object")
        schema["additionalProperties"] = self.values.openapi()
        schema["maxProperties"] = self.max_properties
        return schema

    def validate(self, value: object, path: str, where: Where) -> None:
        if type(value) is not dict and not isinstance(value, Mapping):  # dict first: ABCs are slow
            raise where.error(path, "a mapping of strings to strings", value)
        if len(value) > self.max_properties:
            raise where.error(path, f"at most {self.max_properties} entries", f"{len(value)}")
        for key, item in value.items():
            if not isinstance(key, str):
                raise where.error(path, "string keys", key)
            self.keys.validate(key, _join(path, key), where)
            self.values.validate(item, _join(path, key), where)


@dataclass(frozen=True, slots=True)
class Object(Node):
    """An object with known fields; ``open`` keeps fields we do not model (``metadata``, ``status``)."""

    fields: Mapping[str, Node] = field(default_factory=dict)
    description: str = ""
    required: tuple[str, ...] = ()
    checks: tuple[Check, ...] = ()
    open: bool = False

    def openapi(self) -> dict[str, Any]:
        schema = self._base("object")
        if self.fields:
            schema["properties"] = {name: node.openapi() for name, node in self.fields.items()}
        if self.required:
            schema["required"] = list(self.required)
        if self.checks:
            schema["x-kubernetes-validations"] = [
                {"rule": check.cel, "message": check.message} for check in self.checks
            ]
        if self.open:
            schema["x-kubernetes-preserve-unknown-fields"] = True
        return schema

    def validate(self, value: object, path: str, where: Where) -> None:
        if type(value) is not dict and not isinstance(value, Mapping):  # dict first: ABCs are slow
            raise where.error(path, "a mapping", value)
        # Unknown fields first: "prots: unknown field" tells the author more than "ports: required". Which one
        # is sought only when the keys are not all known (one set comparison, the common case).
        if not self.open and not value.keys() <= self.fields.keys():
            for name in value:
                if not isinstance(name, str) or name not in self.fields:
                    raise where.unknown(_join(path, str(name)), tuple(self.fields))
        for name in self.required:
            if name not in value:
                raise where.error(_join(path, name), f"{_expected(self.fields[name])} (required)")
        for name, item in value.items():
            node = self.fields.get(name) if isinstance(name, str) else None
            if node is not None:
                node.validate(item, _join(path, name), where)
        for check in self.checks:
            failing = check.failing(value)
            if failing is not None:
                at = f"{path}.{failing}" if path and failing else failing or path
                raise where.error(at, check.expected)


def _expected(node: Node) -> str:
    if isinstance(node, String):
        return node.expected()
    if isinstance(node, Integer):
        return f"an integer from {node.minimum} to {node.maximum}"
    if isinstance(node, Boolean):
        return "true or false"
    if isinstance(node, Array):
        return "a list"
    return "a mapping"
