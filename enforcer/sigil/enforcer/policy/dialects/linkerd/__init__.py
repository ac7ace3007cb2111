"""Linkerd's authorization policy (``policy.linkerd.io``) translated into Sigil's resources.

Linkerd decides per pod port: a port some ``Server`` selects admits only the clients one of the Server's
authorizations admits (``AuthorizationPolicy`` with its required ``MeshTLSAuthentication``,
``NetworkAuthentication`` or ``ServiceAccount``, the legacy ``ServerAuthorization``, or the Server's
``accessPolicy``); any other port follows the default inbound policy, set for the cluster
(``proxy.defaultInboundPolicy``) and overridden per namespace by the ``config.linkerd.io/default-inbound-policy``
annotation (linkerd/website ``reference/authorization-policy.md``). The translation keeps that structure:

* each Server becomes an ALLOW ``AuthorizationPolicy`` whose target ref names its pods *and port*, so that
  port denies unless allowed and the pod's other ports are left alone (:mod:`._servers`);
* each annotated ``Namespace`` in the batch becomes a Baseline ``ClusterAuthorizationPolicy`` for that
  namespace, consulted exactly where no Server selected the port;
* the cluster default becomes Sigil's ``--default`` (:func:`sigil_default` says which, and how faithfully).

Everything Linkerd would do that Sigil cannot say at L4 (HTTP routes, per-pod defaults, named ports, the
cluster's networks when they are not Linkerd's defaults) is a finding, never silently dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

from sigil.enforcer.policy.dialects.base import (
    TRANSLATED_FROM,
    Exactness,
    Finding,
    SourcedDocument,
    Translated,
    TranslateOptions,
    Translation,
)
from sigil.enforcer.policy.dialects.linkerd._authn import CLUSTER_NETWORKS
from sigil.enforcer.policy.dialects.linkerd._authorizations import resolve_authorizations
from sigil.enforcer.policy.dialects.linkerd._batch import (
    DEFAULT_POLICY_ANNOTATION,
    Batch,
    LinkerdObject,
    read_batch,
)
from sigil.enforcer.policy.dialects.linkerd._defaults import (
    DEFAULT_POLICIES,
    default_note,
    default_rules,
    sigil_default,
)
from sigil.enforcer.policy.dialects.linkerd._servers import (
    API_VERSION,
    checked,
    translate_servers,
    translated_from,
)

__all__ = [
    "BASELINE_PRIORITY",
    "CLUSTER_NETWORKS",
    "DEFAULT_POLICIES",
    "DEFAULT_POLICY_ANNOTATION",
    "DIALECT",
    "LinkerdDialect",
    "sigil_default",
]

BASELINE_PRIORITY = 1000
"""The priority of the Baseline policies that carry namespaces' default inbound policies."""


class LinkerdDialect:
    """The translator of ``policy.linkerd.io`` resources (and the ``Namespace`` objects passed with them)."""

    @property
    def name(self) -> str:
        """``linkerd``."""
        return "linkerd"

    def translate(
        self, documents: Sequence[SourcedDocument], options: TranslateOptions
    ) -> Translation:
        """Translate one batch: every Server, the authorizations that apply to it, and namespace defaults."""
        batch = read_batch(documents)
        findings = batch.findings
        authorizations = resolve_authorizations(batch, options, findings)
        translated = translate_servers(batch, authorizations, findings)
        translated.extend(_namespace_defaults(batch, findings))
        return Translation(tuple(translated), tuple(findings))


def _namespace_defaults(batch: Batch, findings: list[Finding]) -> list[Translated]:
    translated = []
    for namespace in batch.of_kind("Namespace"):
        name = namespace.annotations.get(DEFAULT_POLICY_ANNOTATION)
        if name is None:
            continue
        path = f"metadata.annotations[{DEFAULT_POLICY_ANNOTATION}]"
        if name not in DEFAULT_POLICIES:
            findings.append(
                namespace.finding(
                    path,
                    Exactness.REFUSED,
                    f"{name!r} is not one of {', '.join(DEFAULT_POLICIES)}; not translated "
                    "(Linkerd falls back to the cluster default)",
                )
            )
            continue
        note = default_note(name)
        if note is not None:
            findings.append(namespace.finding(path, *note))
        baseline = _baseline(namespace, name)
        if checked(namespace, baseline, findings):
            translated.append(baseline)
    return translated


def _baseline(namespace: LinkerdObject, name: str) -> Translated:
    # Baseline rules decide by the first match; whoever the default does not admit must meet an explicit Deny,
    # or the cluster's --default would decide instead of the namespace's.
    rules = default_rules(name, action="Allow")
    if name not in ("all-unauthenticated", "audit"):
        rules.append({"action": "Deny", "sources": [{"type": "Any"}]})
    document = {
        "apiVersion": API_VERSION,
        "kind": "ClusterAuthorizationPolicy",
        "metadata": {
            "name": f"linkerd-default-{namespace.name}",
            "annotations": {TRANSLATED_FROM: translated_from([namespace])},
        },
        "spec": {
            "tier": "Baseline",
            "priority": BASELINE_PRIORITY,
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace.name}},
            "podSelector": {},
            "rules": rules,
        },
    }
    return Translated(document, (f"linkerd {namespace.label}",))


DIALECT = LinkerdDialect()
"""The Linkerd dialect, as :func:`sigil.enforcer.policy.dialects.base.dialect_named` finds it."""
