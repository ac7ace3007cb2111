"""The settings of one ``sigil-enforcer proxy`` process, built once from its flags and the environment.

argparse hands back a loose ``Namespace`` of strings; :meth:`ProxySettings.from_args` checks it once (the flags a
mode requires, the identity and policy sources), parses every value into its type (addresses, trust domains,
the pod as a :class:`~sigil.enforcer.policy.Target`), and freezes the result, which the server then reads
without parsing anything again. What only one direction uses sits in :class:`Inbound` or :class:`Outbound`, so a
proxy's ``direction`` carries exactly the fields its mode has. A flag beats its environment variable
(:class:`~sigil.enforcer.flags.Environment`). Bad input raises :class:`~sigil.enforcer.errors.RequestError`
naming the flag, which the CLI turns into exit 2.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from sigil.ca.spiffe_id import SpiffeId, TrustDomain
from sigil.enforcer.errors import RequestError
from sigil.enforcer.flags import (
    ENDPOINT_SOCKET_VARIABLE,
    Environment,
    parse_pairs,
    trust_domain_aliases,
)
from sigil.enforcer.policy import Target
from sigil.enforcer.policy.defaults import DefaultPolicy
from sigil.enforcer.policy.peer_ids import WorkloadIdPattern

__all__ = ["Address", "Inbound", "Outbound", "ProxySettings", "address_argument"]


@dataclass(frozen=True, slots=True)
class Address:
    """A host and TCP port, as ``--listen``, ``--forward``, ``--upstream`` and ``--metrics`` spell them."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str, *, default_host: str = "127.0.0.1") -> Address:
        """``HOST:PORT``, ``[V6]:PORT`` or a bare ``PORT`` (on ``default_host``); raises ValueError."""
        host, colon, port = text.rpartition(":")
        if not colon:
            host, port = default_host, text
        host = host.strip("[]") or default_host
        number = int(port)
        if not 0 <= number <= 65535:
            raise ValueError(f"{port} is not a TCP port")
        return cls(host, number)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def address_argument(text: str) -> Address:
    """An argparse ``type`` for ``[HOST:]PORT`` flags (``--listen``, ``--forward``, ``--metrics``...)."""
    try:
        return Address.parse(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{text!r} is not [HOST:]PORT ({err})") from err


@dataclass(frozen=True, slots=True, kw_only=True)
class Inbound:
    """``proxy inbound``: terminate mTLS, decide by policy, forward to the application."""

    #: The application's plain-TCP port.
    forward: Address
    #: The pod this proxy stands in front of, and its namespace's labels.
    target: Target
    namespace_labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    #: A watched policy directory; None: the policies the node agent streams.
    policies: Path | None = None
    #: The agent serving policies when ``policies`` is None; None: the policy source's own default.
    agent_endpoint: str | None = None
    #: The port policies see; None: the port actually listened on.
    policy_port: int | None = None
    #: The local trust domain; None: that of the workload's own SVID.
    trust_domain: TrustDomain | None = None
    #: When no policy decides (``--default``).
    default: DefaultPolicy = DefaultPolicy.ALLOW
    #: How local IDs name their namespace and ServiceAccount.
    workload_ids: WorkloadIdPattern = field(default_factory=WorkloadIdPattern)
    #: Istio's rootNamespace and trustDomainAliases, for Istio policy in the directory.
    root_namespace: str = "istio-system"
    trust_domain_aliases: tuple[str, ...] = ()
    #: Exact paths a plaintext kubelet probe may GET (authz.md 7.1); empty: plaintext is always refused.
    probe_paths: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True, kw_only=True)
class Outbound:
    """``proxy outbound``: accept plain TCP, originate mTLS to the upstream."""

    upstream: Address
    #: Which server to accept; None: any ID of the workload's own trust domain.
    expect: SpiffeId | TrustDomain | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxySettings:
    """Everything one proxy process needs, typed."""

    direction: Inbound | Outbound
    listen: Address
    #: The Workload API (``unix:///path``); None when ``svid_dir`` is the identity source.
    workload_api: str | None = None
    #: A directory holding ``svid.pem``, ``key.pem`` and ``bundle.pem`` instead of the Workload API.
    svid_dir: Path | None = None
    federated: Mapping[TrustDomain, Path] = field(default_factory=lambda: MappingProxyType({}))
    #: How often policy and SVID files are looked at for changes.
    watch_interval: float = 2.0
    #: Where to serve ``/metrics``; None: nowhere.
    metrics: Address | None = None
    drain_seconds: float = 10.0

    @classmethod
    def from_args(
        cls, args: argparse.Namespace, environment: Environment | None = None
    ) -> ProxySettings:
        """Check and type the ``proxy`` subcommand's ``args``; ``environment`` defaults to the process's."""
        env = Environment.read() if environment is None else environment
        inbound = args.mode == "inbound"
        needed = ("forward", "namespace") if inbound else ("upstream",)
        for name in needed:
            if getattr(args, name) is None:
                raise RequestError(f"--{name}", "", f"required by proxy {args.mode}")
        if inbound and args.policies is None and args.policies_from_agent is None:
            raise RequestError("--policies", "", "--policies or --policies-from-agent is required")
        workload_api: str | None = (
            args.workload_api if args.workload_api is not None else env.endpoint_socket
        )
        if args.svid_dir is None and not workload_api:
            raise RequestError(
                "--workload-api", "", f"give a socket, {ENDPOINT_SOCKET_VARIABLE} or --svid-dir"
            )
        direction: Inbound | Outbound
        if inbound:
            trust_domain: str | None = (
                args.trust_domain if args.trust_domain is not None else env.trust_domain
            )
            direction = Inbound(
                forward=args.forward,
                target=Target.parse(args.namespace, parse_pairs("--labels", args.labels)),
                namespace_labels=MappingProxyType(
                    parse_pairs("--namespace-labels", args.namespace_labels)
                ),
                policies=args.policies,
                # A bare --policies-from-agent: the agent serving the Workload API.
                agent_endpoint=args.policies_from_agent or workload_api,
                policy_port=args.port,
                trust_domain=TrustDomain.parse(trust_domain) if trust_domain else None,
                default=DefaultPolicy(args.default),
                workload_ids=WorkloadIdPattern(args.workload_id_template),
                root_namespace=args.root_namespace,
                trust_domain_aliases=trust_domain_aliases(args),
                probe_paths=frozenset(_probe_path(path) for path in args.probe_path),
            )
        else:
            direction = Outbound(upstream=args.upstream, expect=_expectation(args))
        return cls(
            direction=direction,
            listen=args.listen,
            workload_api=workload_api,
            svid_dir=args.svid_dir,
            # Only with --svid-dir: the Workload API serves the federated bundles itself.
            federated=MappingProxyType(_federated(args.federated) if args.svid_dir else {}),
            watch_interval=args.watch_interval,
            metrics=args.metrics,
            drain_seconds=args.drain,
        )


def _probe_path(path: str) -> str:
    # An origin-form request target (RFC 9112 §3.2.1): what a kubelet httpGet probe sends.
    if not path.startswith("/") or any(c.isspace() or not c.isprintable() for c in path):
        raise RequestError("--probe-path", path, "expected an absolute path such as /healthz")
    return path


def _federated(items: list[str]) -> dict[TrustDomain, Path]:
    federated = {}
    for item in items:
        name, equals, file = item.partition("=")
        if not equals:
            raise RequestError("--federated", item, "expected TD=FILE")
        federated[TrustDomain.parse(name)] = Path(file)
    return federated


def _expectation(args: argparse.Namespace) -> SpiffeId | TrustDomain | None:
    if args.expect_id:
        return SpiffeId.parse(args.expect_id)
    if args.expect_trust_domain:
        return TrustDomain.parse(args.expect_trust_domain)
    return None
