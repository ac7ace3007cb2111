"""Selectors: what attestation learned about a calling process, as ``type:value`` strings SPIRE users know.

A registration entry names the selectors a workload must show; an entry applies when all of its selectors are
among the caller's (SPIRE's AND semantics). Types are ``unix`` and ``k8s``; the value may itself hold colons
(``k8s:pod-label:app:web``), so only the first colon separates the type. A caller found in a pod also carries the
:class:`Pod` itself, the typed facts those ``k8s`` selectors were made of.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from sigil.node_agent.attestation.peer import PeerCredentials

__all__ = ["Pod", "Selector", "Selectors", "WorkloadAttestation"]


@dataclass(frozen=True, slots=True, order=True)
class Selector:
    """One fact about a workload, such as ``unix:uid:1000`` or ``k8s:ns:payments``."""

    type: str
    value: str

    def __post_init__(self) -> None:
        if not self.type or ":" in self.type:
            raise ValueError(f"a selector type is non-empty and has no ':' ({self.type!r})")
        if not self.value:
            raise ValueError(f"selector {self.type!r} has an empty value")

    @classmethod
    def parse(cls, text: str) -> Selector:
        """Parse ``type:value``."""
        kind, sep, value = text.partition(":")
        if not sep:
            raise ValueError(f"a selector is written type:value, not {text!r}")
        return cls(kind, value)

    def __str__(self) -> str:
        return f"{self.type}:{self.value}"


Selectors = frozenset[Selector]


@dataclass(frozen=True, slots=True, kw_only=True)
class Pod:
    """The facts about a pod that selectors are made of."""

    uid: str
    namespace: str
    name: str
    service_account: str
    node_name: str
    labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Frozen means frozen: a caller keeping the dict it passed must not change the pod behind our back.
        object.__setattr__(self, "labels", MappingProxyType(dict(self.labels)))


@dataclass(frozen=True, slots=True)
class WorkloadAttestation:
    """The outcome of attesting one caller: the process the kernel named, the selectors it earned, and its pod.

    ``pod`` is the pod the ``k8s`` attestor found the caller in (None outside any pod), carried as the attestor
    had it, so that what asks the issuer about the pod never reads it back out of selector strings.
    """

    peer: PeerCredentials
    selectors: Selectors
    pod: Pod | None = None

    def matches(self, required: Iterable[Selector]) -> bool:
        """True when the caller shows every selector in ``required`` (an empty set matches nobody)."""
        needed = frozenset(required)
        return bool(needed) and needed <= self.selectors
