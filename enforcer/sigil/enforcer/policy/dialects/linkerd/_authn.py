"""Linkerd's client authentications in Sigil's terms: mesh identities become sources, networks become rules.

A Linkerd identity is a DNS-like name, ``<sa>.<ns>.serviceaccount.identity.linkerd.<trust domain>``; a
``*.`` prefix matches every identity with more labels before that suffix and a bare ``*`` every meshed client
(linkerd2 ``policy-controller/core/src/identity_match.rs``). Sigil's peers carry SPIFFE IDs, so an identity of
the local trust domain becomes a ``ServiceAccount`` source, a namespace wildcard ``ServiceAccount`` name ``*``,
other suffixes a ``SPIFFEPattern`` under the workload ID template, and ``*`` ``Authenticated``. A
``NetworkAuthentication``'s networks are OR-ed and each carries its own exceptions, while a Sigil rule has one
``exceptSourceCIDRs`` list, so each network with exceptions becomes a rule of its own (rules are OR-ed).
"""

from __future__ import annotations

import copy
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sigil.enforcer.policy.dialects.base import TranslateOptions

__all__ = [
    "CLUSTER_NETWORKS",
    "LINKERD_TRUST_DOMAIN",
    "MAX_BLOCKS",
    "MAX_SOURCES",
    "NO_CLIENT",
    "Client",
    "Network",
    "NetworkError",
    "account_source",
    "client_rules",
    "identity_source",
    "parse_networks",
]

CLUSTER_NETWORKS = ("10.0.0.0/8", "100.64.0.0/10", "172.16.0.0/12", "192.168.0.0/16", "fd00::/8")
"""Linkerd's default ``clusterNetworks`` (charts/linkerd-control-plane/values.yaml), which its ``cluster-*``
default policies and ``ServerAuthorization`` objects without ``networks`` admit."""

MAX_SOURCES = 128
"""The most sources one Sigil rule holds (its schema's limit)."""
MAX_BLOCKS = 32
"""The most blocks one Sigil rule's ``sourceCIDRs`` or ``exceptSourceCIDRs`` holds."""

_SUFFIX = ("serviceaccount", "identity", "linkerd")
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_ACCOUNT = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")

Source = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Network:
    """One Linkerd network: a CIDR block and the blocks inside it that are excluded."""

    cidr: str
    excepts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Client:
    """Who one Linkerd authorization admits: ``sources`` (None: every peer, meshed or not) from ``networks``
    (None: every address)."""

    sources: tuple[Source, ...] | None
    networks: tuple[Network, ...] | None


class NetworkError(ValueError):
    """A network list Linkerd's admission would refuse; the message says which entry and why."""


LINKERD_TRUST_DOMAIN = "cluster.local"
"""Linkerd's default ``identityTrustDomain``: its identities name it even where Sigil's trust domain differs."""


def identity_source(identity: str, options: TranslateOptions) -> Source | str:
    """The Sigil source matching what Linkerd's ``identity`` matches, or why there is none.

    Linkerd identities of the local trust domain, or of Linkerd's default ``cluster.local``, name the local
    trust domain's workloads (``TranslateOptions``: Linkerd's identity suffix maps to the local domain).
    """
    if identity == "*":
        return {"type": "Authenticated"}
    if "{service_account}" not in options.id_template:
        return _NO_ACCOUNT_IN_TEMPLATE.format(f"identity {identity!r}", options.id_template)
    for domain in dict.fromkeys((options.trust_domain, LINKERD_TRUST_DOMAIN)):
        found = _in_domain(identity, options, [*_SUFFIX, *domain.split(".")])
        if found is not None:
            return found
    return (
        f"identity {identity!r} is not a Linkerd workload identity of the local trust domain "
        f"(<sa>.<ns>.serviceaccount.identity.linkerd.{options.trust_domain}, a '*.' suffix of it, or '*'); "
        "it is dropped, so the authorization admits fewer clients than in Linkerd"
    )


def _in_domain(identity: str, options: TranslateOptions, base: list[str]) -> Source | None:
    """The source of ``identity`` when it names workloads under the labels ``base``, else None."""
    if identity.startswith("*."):
        labels = identity[2:].split(".")
        if len(labels) <= len(base) and labels == base[len(base) - len(labels) :]:
            # A suffix of the labels ``serviceaccount.identity.linkerd.<td>`` (or all of them): every workload.
            return _pattern(options, namespace="*", account="*")
        if len(labels) <= len(base) or labels[-len(base) :] != base:
            return None
        namespace, prefix = labels[-len(base) - 1], labels[: -len(base) - 1]
        if not _names_account(namespace, ".".join(prefix or ["x"])):
            return None
        if not prefix:
            return {
                "type": "ServiceAccount",
                "serviceAccount": {"namespace": namespace, "name": "*"},
            }
        return _pattern(options, namespace=namespace, account="*." + ".".join(prefix))
    labels = identity.split(".")
    if len(labels) < len(base) + 2 or labels[-len(base) :] != base:
        return None
    namespace, account = labels[-len(base) - 1], ".".join(labels[: -len(base) - 1])
    if not _names_account(namespace, account):
        return None
    return {"type": "ServiceAccount", "serviceAccount": {"namespace": namespace, "name": account}}


NO_CLIENT = (
    "a ServiceAccount named '*': Linkerd builds the identity '*.<ns>.serviceaccount...' from it and matches "
    "that literally, so it admits no client"
)
"""The finding for a ServiceAccount named ``*``, which :func:`account_source` reports as None."""


def account_source(namespace: str, name: str, options: TranslateOptions) -> Source | str | None:
    """The source of ServiceAccount ``namespace/name`` (Linkerd matches its identity exactly).

    None for the name ``*`` (see :data:`NO_CLIENT`), and why there is no source for a name that is not a
    Kubernetes name.
    """
    if name == "*":
        return None
    if not _names_account(namespace, name):
        return f"ServiceAccount {namespace}/{name} is not a Kubernetes namespace and account name; dropped"
    if "{service_account}" not in options.id_template:
        return _NO_ACCOUNT_IN_TEMPLATE.format(
            f"ServiceAccount {namespace}/{name}", options.id_template
        )
    return {"type": "ServiceAccount", "serviceAccount": {"namespace": namespace, "name": name}}


def _names_account(namespace: str, account: str) -> bool:
    return _NAMESPACE.fullmatch(namespace) is not None and _ACCOUNT.fullmatch(account) is not None


_NO_ACCOUNT_IN_TEMPLATE = (
    "{} names a ServiceAccount, but the workload ID template {!r} carries none; dropped, so fewer clients "
    "are admitted than in Linkerd"
)


class _AnyOther(dict[str, str]):
    """Template fields other than the namespace and account (``{pod_name}``, ...) match any value."""

    def __missing__(self, key: str) -> str:
        return "*"


def _pattern(options: TranslateOptions, *, namespace: str, account: str) -> Source:
    path = options.id_template.format_map(_AnyOther(namespace=namespace, service_account=account))
    return {"type": "SPIFFEPattern", "spiffePattern": f"spiffe://{options.trust_domain}/{path}"}


def parse_networks(raw: object) -> tuple[Network, ...]:
    """Linkerd's ``networks: [{cidr, except}]``; :class:`NetworkError` where Linkerd's admission refuses it."""
    if not isinstance(raw, Sequence) or isinstance(raw, str) or not raw:
        raise NetworkError("networks must be a non-empty list")
    networks = []
    for index, item in enumerate(raw):
        if not isinstance(item, Mapping) or "cidr" not in item:
            raise NetworkError(f"networks[{index}] must be a mapping with a cidr")
        cidr = _block(item["cidr"], f"networks[{index}].cidr")
        excepts = []
        for position, raw_except in enumerate(item.get("except") or ()):
            block = _block(raw_except, f"networks[{index}].except[{position}]")
            if block.version != cidr.version or not block.subnet_of(cidr):  # type: ignore[arg-type]
                raise NetworkError(
                    f"networks[{index}].except[{position}]: {block} is not inside {cidr}"
                )
            if block == cidr:
                raise NetworkError(
                    f"networks[{index}].except[{position}]: {block} negates all of {cidr}"
                )
            excepts.append(str(block))
        if len(excepts) > MAX_BLOCKS:
            raise NetworkError(
                f"networks[{index}] has {len(excepts)} exceptions; a Sigil rule holds at most {MAX_BLOCKS}"
            )
        networks.append(Network(str(cidr), tuple(excepts)))
    return tuple(networks)


def _block(raw: object, path: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(str(raw), strict=False)
    except ValueError as err:
        raise NetworkError(f"{path}: {raw!r} is not an IP address or CIDR block") from err


def client_rules(client: Client, *, action: str | None = None) -> list[dict[str, Any]]:
    """Sigil rules (OR-ed) admitting exactly ``client``; ``action`` for ClusterAuthorizationPolicy rules.

    A Sigil rule holds at most :data:`MAX_SOURCES` sources and :data:`MAX_BLOCKS` blocks per list, so longer
    lists are spread over several rules (OR-ed, like the sources and blocks within one).
    """
    sources: list[Source] = [{"type": "Any"}] if client.sources is None else list(client.sources)
    head: dict[str, Any] = {} if action is None else {"action": action}
    attributes: list[dict[str, Any] | None] = [None]
    if client.networks is not None:
        plain = [network.cidr for network in client.networks if not network.excepts]
        attributes = [{"sourceCIDRs": chunk} for chunk in _chunks(plain, MAX_BLOCKS)]
        attributes += [
            {"sourceCIDRs": [network.cidr], "exceptSourceCIDRs": list(network.excepts)}
            for network in client.networks
            if network.excepts
        ]
    rules = []
    for network in attributes:
        for chunk in _chunks(sources, MAX_SOURCES) or [[]]:
            rule = {**head, "sources": copy.deepcopy(chunk)}
            if network is not None:
                rule["networkAttributes"] = copy.deepcopy(network)
            rules.append(rule)
    return rules


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[start : start + size] for start in range(0, len(items), size)]
