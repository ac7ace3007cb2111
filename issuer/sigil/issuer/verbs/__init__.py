"""``sigil-server``'s admin verbs, one module per area, each adding its subcommands and their handlers.

:mod:`sigil.issuer.cli` owns the global flags, ``run`` and the choice of admin backend; the verbs here only parse
their own arguments and print what the backend answers.
"""

from __future__ import annotations

from sigil.issuer.verbs.agent import add_agent_verbs, healthcheck
from sigil.issuer.verbs.arguments import Command, Subcommands
from sigil.issuer.verbs.authority import add_authority_verbs
from sigil.issuer.verbs.policy import add_policy_verbs
from sigil.issuer.verbs.registration import add_registration_verbs
from sigil.issuer.verbs.upstream import add_upstream_verbs

__all__ = [
    "Command",
    "Subcommands",
    "add_agent_verbs",
    "add_authority_verbs",
    "add_policy_verbs",
    "add_registration_verbs",
    "add_upstream_verbs",
    "healthcheck",
]
