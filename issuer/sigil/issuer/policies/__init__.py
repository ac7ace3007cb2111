"""The issuer's authorization policies, named by the direction they travel.

In, from the sources: :mod:`.sources` (a directory of YAML files and the documents kept per source),
:mod:`.crd_source` (the ``authz.sigil.dev`` CRDs by list+watch) and the admin verbs, whose documents live in
:mod:`.tables` beside the revision every replica shares. Out, to the agents: :mod:`.feed`, the set in force under
that revision, long-polled by ``GET /v1/agent/policies``. Back to the cluster: :mod:`.crd_status`, the
``Accepted`` condition on every policy resource. Judging a document is never done here: the enforcer's
:mod:`sigil.enforcer.policy` is the one place that accepts or refuses a policy.
"""

from __future__ import annotations

from sigil.issuer.policies.crd_source import policy_informers
from sigil.issuer.policies.feed import ADMIN_SOURCE, PolicyFeed
from sigil.issuer.policies.tables import AdminPolicy, PolicyTables

__all__ = ["ADMIN_SOURCE", "AdminPolicy", "PolicyFeed", "PolicyTables", "policy_informers"]
