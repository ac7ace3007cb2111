"""Other meshes' authorization policy read as Sigil policy: Istio's and Linkerd's resources, recognised by group.

No mesh reads another mesh's policy. Sigil translates Istio's ``security.istio.io`` ``AuthorizationPolicy`` and
Linkerd's ``policy.linkerd.io`` resources into its own ``authz.sigil.dev`` resources (authz.md parts 2, 4 and
7), wherever policies are read: files, CRD watches, ``check``, ``effective``, ``import`` and ``diff``. The
contract between those readers and each dialect's translator is :mod:`.base`; a dialect's module is imported
only when a document of its group is met, so reading Sigil's own policies costs nothing more.
"""

from __future__ import annotations

from sigil.enforcer.policy.dialects.base import (
    Dialect,
    Exactness,
    Finding,
    SourcedDocument,
    Translated,
    TranslateOptions,
    Translation,
    dialect_for,
    dialect_named,
    foreign_group,
)

__all__ = [
    "Dialect",
    "Exactness",
    "Finding",
    "SourcedDocument",
    "TranslateOptions",
    "Translated",
    "Translation",
    "dialect_for",
    "dialect_named",
    "foreign_group",
]
