"""The contract between policy readers and the translators of other meshes' policy dialects.

A reader (the file loader, the issuer's CRD watch, ``import``, ``diff``) gathers the foreign documents of one
source, hands them to their dialect in one batch (Linkerd's meaning is spread over several objects: a
``Server``, the ``AuthorizationPolicy`` objects naming it, the authentications they require), and gets back
Sigil documents, each annotated with the objects it came from, plus findings: everything that was not
translated exactly, with what it would have meant in the source mesh. The Sigil documents are then judged like
any other (:func:`sigil.enforcer.policy.documents.judge`), so a translation means the same everywhere.
"""

from __future__ import annotations

import enum
import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "TRANSLATED_FROM",
    "Dialect",
    "Exactness",
    "Finding",
    "SourcedDocument",
    "TranslateOptions",
    "Translated",
    "Translation",
    "context_kind",
    "dialect_for",
    "dialect_for_group",
    "dialect_named",
    "foreign_group",
    "takes_context",
]

TRANSLATED_FROM = "authz.sigil.dev/translated-from"
"""The annotation each translated Sigil document carries: the dialect and the source objects it came from."""

_DIALECT_MODULES = {
    "security.istio.io": ("istio", "sigil.enforcer.policy.dialects.istio"),
    "policy.linkerd.io": ("linkerd", "sigil.enforcer.policy.dialects.linkerd"),
}

_CONTEXT_KINDS = {
    ("v1", "Namespace"),
    ("v1", "Pod"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"),
    ("apps/v1", "DaemonSet"),
    ("apps/v1", "ReplicaSet"),
}
"""Kubernetes objects part of a dialect's meaning when they sit beside its policy: Linkerd reads a namespace's
``config.linkerd.io/default-inbound-policy`` annotation and resolves a ``Server``'s named port in the pods'
container ports."""

_TAKES_CONTEXT = {"policy.linkerd.io"}


@dataclass(frozen=True, slots=True)
class TranslateOptions:
    """What a translation needs to know about the mesh it reads.

    ``trust_domain`` is the local trust domain (Istio's ``cluster.local`` and Linkerd's identity suffix map to
    it); ``trust_domain_aliases`` are Istio's ``trustDomainAliases``; ``root_namespace`` is Istio's
    ``rootNamespace``, whose policies apply mesh-wide; ``id_template`` is the workload ID path template of
    the local trust domain (``ns/{namespace}/sa/{service_account}`` by default).
    """

    trust_domain: str = "cluster.local"
    trust_domain_aliases: tuple[str, ...] = ()
    root_namespace: str = "istio-system"
    id_template: str = "ns/{namespace}/sa/{service_account}"


@dataclass(frozen=True, slots=True)
class SourcedDocument:
    """One foreign document as read, and where: ``file.yaml#2`` (document index from 0) or ``crd ns/name``."""

    document: Mapping[str, Any]
    where: str


class Exactness(enum.Enum):
    """How faithfully a part of a source object was translated."""

    EXACT = "exact"
    """Informational: translated, and Sigil decides exactly as the source mesh would."""
    APPROXIMATE = "approximate"
    """Translated with the meaning the source mesh itself gives it on plain TCP (Istio's HTTP-only fields)."""
    REFUSED = "refused"
    """Not translated; the finding says what the part would have meant and what was done with its object."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One statement about the translation of one source object.

    ``source`` names the object (``istio AuthorizationPolicy ns/name``) and ``where`` it was read; ``path`` is
    the field path within it (``spec.rules[0].to[0].operation.methods``, empty for the whole object).
    """

    source: str
    where: str
    path: str
    exactness: Exactness
    message: str

    def __str__(self) -> str:
        at = f" {self.path}" if self.path else ""
        return f"{self.exactness.value}: {self.source} ({self.where}){at}: {self.message}"


@dataclass(frozen=True, slots=True)
class Translated:
    """One Sigil document (``authz.sigil.dev/v1alpha1``) and the source objects it came from."""

    document: Mapping[str, Any]
    sources: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Translation:
    """What a dialect made of a batch of documents."""

    documents: tuple[Translated, ...] = ()
    findings: tuple[Finding, ...] = field(default=())

    @property
    def exact(self) -> bool:
        """True when nothing was approximated or refused: the Sigil documents decide as the source did."""
        return all(finding.exactness is Exactness.EXACT for finding in self.findings)


class Dialect(Protocol):
    """A translator of one mesh's policy resources."""

    @property
    def name(self) -> str:
        """``istio`` or ``linkerd``: the name ``import`` takes."""
        ...

    def translate(
        self, documents: Sequence[SourcedDocument], options: TranslateOptions
    ) -> Translation:
        """Translate one source's documents of this dialect together (each already known to be of its group)."""
        ...


def foreign_group(document: object) -> str | None:
    """The API group of a document of a known foreign dialect, or None (Sigil's own, or not a resource)."""
    if not isinstance(document, Mapping):
        return None
    api_version = document.get("apiVersion")
    if not isinstance(api_version, str) or "/" not in api_version:
        return None
    group = api_version.split("/", 1)[0]
    return group if group in _DIALECT_MODULES else None


def context_kind(document: object) -> str | None:
    """``Namespace``, ``Pod``, ``Deployment``... for a Kubernetes object a dialect reads beside its policy."""
    if not isinstance(document, Mapping):
        return None
    kind = (document.get("apiVersion"), document.get("kind"))
    return kind[1] if kind in _CONTEXT_KINDS else None


def takes_context(group_or_name: str) -> bool:
    """Whether the dialect of an API group (or named ``linkerd``...) reads :func:`context_kind` objects."""
    return any(
        group_or_name in (group, name)
        for group, (name, _) in _DIALECT_MODULES.items()
        if group in _TAKES_CONTEXT
    )


def dialect_for(document: object) -> Dialect | None:
    """The dialect that reads ``document``, by its ``apiVersion`` group; None for Sigil's own documents."""
    group = foreign_group(document)
    if group is None:
        return None
    return dialect_for_group(group)


def dialect_for_group(group: str) -> Dialect:
    """The dialect of an API group that :func:`foreign_group` knows (KeyError for another)."""
    return _load(_DIALECT_MODULES[group][1])


def dialect_named(name: str) -> Dialect:
    """The dialect called ``name`` (``istio``, ``linkerd``); ValueError naming the known ones otherwise."""
    for known, module in _DIALECT_MODULES.values():
        if known == name:
            return _load(module)
    names = ", ".join(sorted(known for known, _ in _DIALECT_MODULES.values()))
    raise ValueError(f"unknown policy dialect {name!r}: expected one of {names}")


def _load(module: str) -> Dialect:
    dialect: Dialect = importlib.import_module(module).DIALECT
    return dialect
