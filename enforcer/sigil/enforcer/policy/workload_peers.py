"""Representative local peers whose IDs fit the workload ID template: the namespace rows of the effective view.

A local peer whose ID fits the template (``ns/{namespace}/sa/{service_account}`` by default, or whatever the
issuer's ``workload_id_template`` says, :mod:`.peer_ids`) holds keys that depend on its namespace, its
ServiceAccount and the named ``/*`` prefixes above its ID. Those prefixes form a chain, so the deepest one names
them all. So every such peer is treated alike with the peer built from:

* an *anchor*: the deepest named local prefix (or exact ID) above it, or none; the anchor's segments fix the
  template fields they cover;
* its namespace, when a rule or the index can tell it apart (a candidate), else a fresh name;
* its ServiceAccount likewise;
* a fresh value in every other field (pod name, node, ...), which no named prefix holds.

:func:`workload_peers` builds one such peer per (anchor, namespace, account) combination; the effective view keeps
those whose keys differ from every other row's. The fresh value is no substring of any named segment, so a
field filled with it (even inside a segment such as ``pod-{pod_name}``) never reads as a named one.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Sequence

from sigil.ca.errors import InvalidSpiffeIdError
from sigil.ca.spiffe_id import SpiffeId, TrustDomain
from sigil.enforcer.policy.peer_ids import WorkloadIdPattern

__all__ = ["TEMPLATE_FIELDS", "template_segments", "workload_peers"]

TEMPLATE_FIELDS = ("namespace", "service_account", "pod_name", "pod_uid", "node_name", "node_uid")


def template_segments(template: str) -> list[re.Pattern[str]]:
    """One regex per ``/``-separated segment of the template, each field a named group."""
    compiled = []
    for segment in template.split("/"):
        pattern, seen = "", set()
        for literal, name, _spec, _conversion in string.Formatter().parse(segment):
            pattern += re.escape(literal)
            if name is not None:
                pattern += f"(?P={name})" if name in seen else f"(?P<{name}>[^/]+)"
                seen.add(name)
        compiled.append(re.compile(pattern))
    return compiled


def _bind(segments: list[re.Pattern[str]], anchor: Sequence[str]) -> dict[str, str] | None:
    """The template fields an anchor's segments fix, or None when the anchor is no prefix of a fitting ID."""
    if len(anchor) > len(segments):
        return None
    bound: dict[str, str] = {}
    for regex, text in zip(segments, anchor, strict=False):
        found = regex.fullmatch(text)
        if found is None:
            return None
        for name, value in found.groupdict().items():
            if bound.setdefault(name, value) != value:
                return None
    return bound


def workload_peers(
    pattern: WorkloadIdPattern,
    trust_domain: TrustDomain,
    *,
    anchors: Iterable[Sequence[str]],
    namespaces: Sequence[str],
    accounts: Sequence[str],
    fresh: str,
) -> Iterable[tuple[str, SpiffeId]]:
    """``(namespace, peer)`` for each anchor (path segments; ``()`` for none), each candidate namespace and
    account, and ``fresh``; only peers whose ID fits the template, without repeats."""
    segments = template_segments(pattern.template)
    seen: set[SpiffeId] = set()
    for anchor in ((), *anchors):
        bound = _bind(segments, anchor)
        if bound is None:
            continue
        for namespace in (bound["namespace"],) if "namespace" in bound else (*namespaces, fresh):
            for account in (
                (bound["service_account"],) if "service_account" in bound else (*accounts, fresh)
            ):
                fields = dict.fromkeys(TEMPLATE_FIELDS, fresh)
                fields.update(namespace=namespace, service_account=account)
                fields.update(bound)
                try:
                    peer = SpiffeId.parse(
                        f"spiffe://{trust_domain.name}/{pattern.template.format(**fields)}"
                    )
                except InvalidSpiffeIdError:
                    continue
                if peer in seen or pattern.place_of(peer.path) is None:
                    continue
                seen.add(peer)
                yield namespace, peer
