"""The settings of one ``sigil-enforcer ext-authz`` process, built once from its flags and the environment.

The pod the server decides for is given the way ``proxy inbound`` takes it (``--namespace``, ``--labels``,
``--namespace-labels``, ``--port``, ``--default``), so that one policy set reads the same through either
enforcement point. What differs: the server listens for Envoy's gRPC calls, on a Unix socket (``unix:///path``,
the usual choice for a sidecar in the same pod) or on loopback TCP, and it learns no trust domain from an SVID of its
own, so the local one is a flag (or ``SIGIL_TRUST_DOMAIN``) and each federated domain Envoy accepts is named with
``--federated-trust-domain``. Bad input raises :class:`~sigil.enforcer.errors.RequestError` naming the flag.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from sigil.ca.errors import InvalidTrustDomainError
from sigil.ca.spiffe_id import TrustDomain
from sigil.enforcer.errors import RequestError
from sigil.enforcer.flags import (
    TRUST_DOMAIN_VARIABLE,
    Environment,
    parse_pairs,
    trust_domain_aliases,
)
from sigil.enforcer.policy import Target
from sigil.enforcer.policy.defaults import DefaultPolicy
from sigil.enforcer.policy.peer_ids import WorkloadIdPattern
from sigil.enforcer.proxy.settings import Address

__all__ = ["ExtAuthzSettings", "parse_listen"]

_UNIX = "unix://"


def parse_listen(text: str) -> Address | Path:
    """``unix:///path`` (a Unix socket) or ``[HOST:]PORT``; raises ValueError saying which form was wrong."""
    if text.startswith(_UNIX):
        path = text.removeprefix(_UNIX)
        if not path.startswith("/"):
            raise ValueError("a Unix socket is unix:///absolute/path")
        return Path(path)
    return Address.parse(text)


@dataclass(frozen=True, slots=True, kw_only=True)
class ExtAuthzSettings:
    """Everything one ext_authz server process needs, typed."""

    #: Where Envoy calls: a Unix socket path, or a TCP address.
    listen: Address | Path
    #: The pod Envoy stands in front of, and its namespace's labels.
    target: Target
    namespace_labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    #: A watched policy directory; None: the policies the node agent streams.
    policies: Path | None = None
    #: The agent serving policies when ``policies`` is None; None: the policy source's own default.
    agent_endpoint: str | None = None
    #: The port policies see; None: the destination port Envoy reports.
    policy_port: int | None = None
    #: The local trust domain (ServiceAccount sources name it).
    trust_domain: TrustDomain
    #: Federated trust domains whose peers Envoy lets through; a peer of any other domain is denied.
    federated: frozenset[TrustDomain] = frozenset()
    #: What decides when no policy does (``--default``).
    default: DefaultPolicy = DefaultPolicy.ALLOW
    #: How local IDs name namespaces (``--workload-id-template``), as the issuer's ``workload_id_template``.
    workload_ids: WorkloadIdPattern = field(default_factory=WorkloadIdPattern)
    #: Istio's rootNamespace and trustDomainAliases, for Istio policy in the directory.
    root_namespace: str = "istio-system"
    trust_domain_aliases: tuple[str, ...] = ()
    #: How often the policy directory is looked at for changes.
    watch_interval: float = 2.0
    #: Where to serve ``/metrics``; None: nowhere.
    metrics: Address | None = None

    @property
    def trust_domains(self) -> frozenset[TrustDomain]:
        """Every trust domain whose peers are decided by policy: the local one and the federated ones."""
        return self.federated | {self.trust_domain}

    @classmethod
    def from_args(
        cls, args: argparse.Namespace, environment: Environment | None = None
    ) -> ExtAuthzSettings:
        """Check and type the ``ext-authz`` subcommand's ``args``; ``environment`` defaults to the process's."""
        env = Environment.read() if environment is None else environment
        if args.policies is None and args.policies_from_agent is None:
            raise RequestError("--policies", "", "--policies or --policies-from-agent is required")
        trust_domain = args.trust_domain if args.trust_domain is not None else env.trust_domain
        if not trust_domain:
            raise RequestError(
                "--trust-domain", "", f"give the local trust domain or set {TRUST_DOMAIN_VARIABLE}"
            )
        return cls(
            listen=args.listen,
            target=Target.parse(args.namespace, parse_pairs("--labels", args.labels)),
            namespace_labels=MappingProxyType(
                parse_pairs("--namespace-labels", args.namespace_labels)
            ),
            policies=args.policies,
            # A bare --policies-from-agent: the agent serving the Workload API, by the SPIFFE convention.
            agent_endpoint=args.policies_from_agent or env.endpoint_socket,
            policy_port=args.port,
            trust_domain=_trust_domain("--trust-domain", trust_domain),
            federated=frozenset(
                _trust_domain("--federated-trust-domain", name) for name in args.federated
            ),
            default=DefaultPolicy(args.default),
            workload_ids=WorkloadIdPattern(args.workload_id_template),
            root_namespace=args.root_namespace,
            trust_domain_aliases=trust_domain_aliases(args),
            watch_interval=args.watch_interval,
            metrics=args.metrics,
        )


def _trust_domain(flag: str, name: str) -> TrustDomain:
    try:
        return TrustDomain.parse(name)
    except InvalidTrustDomainError as err:
        raise RequestError(flag, name, str(err)) from err
