"""A toy foreign dialect for the readers' tests, registered in place of Istio's until its translator lands.

It is not Istio: a document ``security.istio.io/v1`` ``AuthorizationPolicy`` with ``spec.action`` (ALLOW or
DENY) and ``spec.principals`` (SPIFFE IDs) becomes one Sigil AuthorizationPolicy selecting every pod of its
namespace (Mesh-scoped in the root namespace), ``spec.refuse`` makes a REFUSED finding and no document,
``spec.approximate`` an APPROXIMATE finding, ``spec.crash`` a translator failure. Every batch it is handed is
recorded in :data:`BATCHES`, so a test can see that one source's documents were translated together.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sigil.enforcer.policy.dialects.base import (
    TRANSLATED_FROM,
    Exactness,
    Finding,
    SourcedDocument,
    Translated,
    TranslateOptions,
    Translation,
)

BATCHES: list[list[str]] = []


class _Toy:
    name = "istio"

    def translate(
        self, documents: Sequence[SourcedDocument], options: TranslateOptions
    ) -> Translation:
        BATCHES.append([d.where for d in documents])
        out: list[Translated] = []
        findings: list[Finding] = []
        for item in documents:
            doc, meta = item.document, item.document["metadata"]
            spec = doc.get("spec") or {}
            source = f"istio AuthorizationPolicy {meta['namespace']}/{meta['name']}"
            if spec.get("crash"):
                raise ValueError("toy translator crashed")
            if spec.get("refuse"):
                findings.append(
                    Finding(source, item.where, "spec", Exactness.REFUSED, "toy refusal")
                )
                continue
            if spec.get("approximate"):
                findings.append(
                    Finding(source, item.where, "spec", Exactness.APPROXIMATE, "toy approximation")
                )
            sigil: dict[str, Any] = {
                "apiVersion": "authz.sigil.dev/v1alpha1",
                "kind": "AuthorizationPolicy",
                "metadata": {
                    "name": f"istio-{meta['name']}",
                    "namespace": meta["namespace"],
                    "annotations": {TRANSLATED_FROM: source},
                },
                "spec": {
                    "targetRefs": [{"group": "", "kind": "Pod", "selector": {}}],
                    "action": spec["action"],
                    "enforcementLevel": "Network",
                    "rules": [
                        {"sources": [{"type": "SPIFFE", "spiffe": p} for p in spec["principals"]]}
                    ],
                },
            }
            if meta["namespace"] == options.root_namespace:
                sigil["spec"]["scope"] = "Mesh"
            out.append(Translated(sigil, (source,)))
        return Translation(tuple(out), tuple(findings))


DIALECT = _Toy()


def toy(name: str, namespace: str, action: str, *principals: str, **flags: bool) -> dict[str, Any]:
    """A toy document."""
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"action": action, "principals": list(principals), **flags},
    }
