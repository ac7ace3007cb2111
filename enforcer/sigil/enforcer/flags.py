"""What the enforcer's commands read besides their own flags: the environment, and ``k=v,...`` flag values.

Both ``sigil-enforcer check`` and ``sigil-enforcer proxy`` accept a flag's value from the environment when the
flag is absent (a flag beats the environment), and both take pod and namespace labels as ``k=v,...``. The
environment is read here and only here, once per command, into :class:`Environment`; each command's settings
are then built from its flags and that object, so no module deeper down looks at ``os.environ``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sigil.ca.errors import InvalidTrustDomainError
from sigil.ca.spiffe_id import TrustDomain
from sigil.enforcer.errors import RequestError
from sigil.enforcer.policy.defaults import DefaultPolicy
from sigil.enforcer.policy.dialects.base import TranslateOptions
from sigil.enforcer.policy.peer_ids import DEFAULT_WORKLOAD_ID_TEMPLATE

__all__ = [
    "DEFAULT_TRUST_DOMAIN",
    "ENDPOINT_SOCKET_VARIABLE",
    "TRUST_DOMAIN_VARIABLE",
    "Environment",
    "add_decision_arguments",
    "add_policy_source_arguments",
    "add_translation_arguments",
    "local_trust_domain",
    "parse_pairs",
    "port_argument",
    "translate_options",
    "trust_domain_aliases",
]

#: The Workload API's address, by the SPIFFE convention (SPIFFE_Workload_Endpoint.md §4).
ENDPOINT_SOCKET_VARIABLE = "SPIFFE_ENDPOINT_SOCKET"
#: The local trust domain, when a command cannot learn it from the workload's own SVID.
TRUST_DOMAIN_VARIABLE = "SIGIL_TRUST_DOMAIN"
#: The issuer's embedded default (``make run``); operators set --trust-domain or SIGIL_TRUST_DOMAIN.
DEFAULT_TRUST_DOMAIN = "example.org"


@dataclass(frozen=True, slots=True, kw_only=True)
class Environment:
    """The environment variables the enforcer's commands fall back to; empty values count as unset."""

    endpoint_socket: str | None = None
    trust_domain: str | None = None

    @classmethod
    def read(cls, environ: Mapping[str, str] | None = None) -> Environment:
        """The variables of ``environ`` (default: this process's environment)."""
        variables = os.environ if environ is None else environ
        return cls(
            endpoint_socket=variables.get(ENDPOINT_SOCKET_VARIABLE) or None,
            trust_domain=variables.get(TRUST_DOMAIN_VARIABLE) or None,
        )


def parse_pairs(option: str, text: str) -> dict[str, str]:
    """``k=v,k2=v2`` -> mapping; keys and values are checked later by :meth:`Target.parse`.

    Raises :class:`RequestError` naming ``option`` for an item without ``=`` or without a key.
    """
    pairs: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, equals, value = item.partition("=")
        if not equals or not key:
            raise RequestError(option, item, "expected key=value")
        pairs[key] = value
    return pairs


def local_trust_domain(flag: str | None, environment: Environment | None = None) -> TrustDomain:
    """The ``--trust-domain`` flag, else ``SIGIL_TRUST_DOMAIN``, else :data:`DEFAULT_TRUST_DOMAIN`."""
    if flag is not None:
        return TrustDomain.parse(flag)
    variables = environment or Environment.read()
    return TrustDomain.parse(variables.trust_domain or DEFAULT_TRUST_DOMAIN)


def port_argument(text: str) -> int:
    """An argparse ``type`` for a TCP port (1-65535)."""
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (1-65535)")
    return port


def add_decision_arguments(parser: argparse._ActionsContainer) -> None:
    """``--default`` and ``--workload-id-template``, which every command that decides (or shows decisions) takes
    alike: ``check``, ``effective``, ``proxy`` and ``ext-authz``."""
    parser.add_argument(
        "--default",
        choices=[d.value for d in DefaultPolicy],
        default="allow",
        help="when no policy decides (Linkerd's all-unauthenticated, all-authenticated, "
        "cluster-authenticated, deny, audit are allow, authenticated, local-authenticated, deny, audit)",
    )
    parser.add_argument(
        "--workload-id-template",
        default=DEFAULT_WORKLOAD_ID_TEMPLATE,
        metavar="TEMPLATE",
        help="how local IDs name namespaces, as the issuer's workload_id_template (default %(default)s)",
    )


def add_policy_source_arguments(parser: argparse._ActionsContainer, *, agent_default: str) -> None:
    """``--policies DIR`` or ``--policies-from-agent [unix:///PATH]`` (one of the two), as ``proxy`` and
    ``ext-authz`` take them; ``agent_default`` says which agent a bare ``--policies-from-agent`` means."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--policies", type=Path, metavar="DIR", help="watched; last good stays")
    where.add_argument(
        "--policies-from-agent",
        nargs="?",
        const="",
        metavar="unix:///PATH",
        help=f"stream them from the node agent (default: {agent_default}); last good stays",
    )


def add_translation_arguments(parser: argparse._ActionsContainer) -> None:
    """``--root-namespace`` and ``--trust-domain-alias``, which every command reading Istio's policy takes
    (``check``, ``effective``, ``import``, ``diff``, ``proxy``, ``ext-authz``); the trust domain comes from
    ``--trust-domain``."""
    parser.add_argument(
        "--root-namespace",
        default="istio-system",
        metavar="NS",
        help="Istio's rootNamespace: its AuthorizationPolicies apply mesh-wide (default %(default)s)",
    )
    parser.add_argument(
        "--trust-domain-alias",
        action="append",
        default=[],
        metavar="TD",
        help="one of Istio's trustDomainAliases: principals of the local domain also match it; repeatable",
    )


def trust_domain_aliases(args: argparse.Namespace) -> tuple[str, ...]:
    """The ``--trust-domain-alias`` values, each checked as a trust domain name."""
    aliases: list[str] = []
    for alias in getattr(args, "trust_domain_alias", None) or ():
        try:
            aliases.append(TrustDomain.parse(alias).name)
        except InvalidTrustDomainError as err:
            raise RequestError("--trust-domain-alias", "", f"{alias!r}: {err}") from err
    return tuple(aliases)


def translate_options(args: argparse.Namespace, trust_domain: TrustDomain) -> TranslateOptions:
    """How Istio's and Linkerd's documents are translated for a command's flags."""
    template = getattr(args, "workload_id_template", None) or DEFAULT_WORKLOAD_ID_TEMPLATE
    return TranslateOptions(
        trust_domain=trust_domain.name,
        trust_domain_aliases=trust_domain_aliases(args),
        root_namespace=args.root_namespace,
        id_template=template,
    )
