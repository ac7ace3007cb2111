"""Label and field selectors as kube-apiserver parses them, for the API server stand-in (:mod:`sigil_testing.kube`)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["NODE_FIELDS", "POD_FIELDS", "field_matcher", "label_matcher"]

_Obj = dict[str, Any]
_REQ = re.compile(
    r"\s*(!?)([A-Za-z0-9._/-]+)\s*(?:(==|!=|=|notin(?=\s*\()|in(?=\s*\())\s*(\([^)]*\)|[^,]*))?\s*"
)


def label_matcher(selector: str) -> Callable[[Mapping[str, str]], bool]:
    """Parse a label selector (equality and set-based, k8s.io/apimachinery/pkg/labels) into a predicate."""
    tests: list[Callable[[Mapping[str, str]], bool]] = []
    pos = 0
    while pos < len(selector):
        match = _REQ.match(selector, pos)
        if match is None or match.end() == pos:
            raise ValueError(f"unable to parse requirement: {selector[pos:]!r}")
        neg, key, op, raw = match.groups()
        op = (op or "").strip()
        values = {v.strip() for v in (raw or "").strip("()").split(",") if v.strip()}
        if not op:
            tests.append(
                (lambda k: lambda lb: k not in lb)(key)
                if neg
                else (lambda k: lambda lb: k in lb)(key)
            )
        elif op in ("=", "==", "in"):
            tests.append((lambda k, vs: lambda lb: lb.get(k) in vs)(key, values))
        else:
            tests.append((lambda k, vs: lambda lb: lb.get(k) not in vs)(key, values))
        pos = match.end()
        if pos < len(selector) and selector[pos] == ",":
            pos += 1
    return lambda labels: all(test(labels) for test in tests)


#: The field selectors kube-apiserver supports on pods and nodes (the ones Sigil and its tests use).
POD_FIELDS: dict[str, Callable[[_Obj], str]] = {
    "metadata.name": lambda o: o["metadata"]["name"],
    "metadata.namespace": lambda o: o["metadata"]["namespace"],
    "spec.nodeName": lambda o: o["spec"].get("nodeName", ""),
    "spec.serviceAccountName": lambda o: o["spec"].get("serviceAccountName", ""),
    "status.phase": lambda o: o["status"].get("phase", ""),
    "status.podIP": lambda o: o["status"].get("podIP", ""),
}
NODE_FIELDS: dict[str, Callable[[_Obj], str]] = {
    "metadata.name": lambda o: o["metadata"]["name"],
    "spec.unschedulable": lambda o: str(o["spec"].get("unschedulable", False)).lower(),
}


def field_matcher(
    selector: str, fields: Mapping[str, Callable[[_Obj], str]]
) -> Callable[[_Obj], bool]:
    """Parse a field selector over ``fields``; an unsupported field is refused as the real server refuses it."""
    tests: list[Callable[[_Obj], bool]] = []
    for term in filter(None, (t.strip() for t in selector.split(","))):
        name, op, value = re.split(r"(!=|==|=)", term, maxsplit=1)
        if name not in fields:
            raise ValueError(f"field label not supported: {name}")
        get = fields[name]
        if op == "!=":
            tests.append((lambda g, v: lambda o: g(o) != v)(get, value))
        else:
            tests.append((lambda g, v: lambda o: g(o) == v)(get, value))
    return lambda obj: all(test(obj) for test in tests)
