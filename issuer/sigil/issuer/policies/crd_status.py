"""The ``status`` Sigil writes on every policy resource it watches, so ``kubectl get`` shows what is in force.

The shape is Gateway API's policy status (GEP-713's ``PolicyStatus``, which GEP-3779 reuses) reduced to what a
policy without ancestors needs: ``status.conditions`` holds one ``metav1.Condition`` of type ``Accepted``:

- ``True``/``Accepted``: this generation is in force;
- ``False``/``Invalid``: Sigil refused this generation; the message is the refusal's field path and reason, and
  says whether an earlier accepted version stays in force (it does, as for a broken file);
- ``False``/``Conflicted``: valid, but a policy of the same kind and name from another source (a file, the admin
  API) wins, as the policy feed's merge rule says.

An Admin-tier ``ClusterAuthorizationPolicy`` whose ``podSelector`` picks pods by labels is in force, but its
message warns that the pods' namespace owner can relabel a pod out of it (authz.md 7.1): the admin reads it in
``kubectl get -o wide`` rather than learning it from an escape.

Every replica judges the same objects the same way, so each computes the same condition. A replica patches only
when the object's condition differs in anything but its time (``lastTransitionTime`` is kept while the status
holds), and the merge patch carries the ``resourceVersion`` it was computed from: two replicas racing make one
write and one 409, and the write's own watch event finds nothing left to change, so there is no write loop.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import structlog

from sigil.enforcer.errors import PolicyError
from sigil.enforcer.policy.documents import AcceptedPolicy, PolicyKey, document_key
from sigil.issuer.errors import KubernetesUnavailableError
from sigil.issuer.kube.api import KubeApi

__all__ = ["ACCEPTED", "RELABEL_WARNING", "accepted_condition", "write_statuses"]

log = structlog.get_logger(__name__)

#: The condition type, as Gateway API policies name it.
ACCEPTED = "Accepted"
#: Said of an Admin policy that picks pods by labels (``relabel_escapable``).
RELABEL_WARNING = (
    "warning: this Admin policy selects pods by labels (podSelector) that the pods' namespace owner can "
    "change, so relabelling a pod escapes it; select by namespaceSelector alone to hold every pod"
)
# The fields two conditions must share to say the same thing (the time only records when it last changed).
_COMPARED = ("type", "status", "reason", "message", "observedGeneration")


def accepted_condition(
    outcome: AcceptedPolicy | PolicyError,
    document: Mapping[str, Any],
    *,
    source: str,
    owners: Mapping[PolicyKey, str],
    generation: int,
) -> dict[str, Any]:
    """The ``Accepted`` condition (without its time) for one resource, from the feed's judgement of it."""
    if isinstance(outcome, PolicyError):
        detail = str(outcome).removeprefix(f"{outcome.file}: ")
        held = document_key(document)
        kept = (
            "the last accepted version stays in force"
            if held is not None and owners.get(held) == source
            else "nothing of it is in force"
        )
        return _condition("False", "Invalid", f"refused: {detail}; {kept}", generation)
    owner = owners.get(outcome.key)
    if owner != source:
        return _condition(
            "False",
            "Conflicted",
            f"a policy of the same kind and name from {owner or 'another source'} is in force instead",
            generation,
        )
    if outcome.policy.relabel_escapable:
        return _condition("True", ACCEPTED, f"in force; {RELABEL_WARNING}", generation)
    return _condition("True", ACCEPTED, "in force", generation)


def _condition(status: str, reason: str, message: str, generation: int) -> dict[str, Any]:
    return {
        "type": ACCEPTED,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
    }


async def write_statuses(
    api: KubeApi,
    resource: tuple[str, str, str],
    wanted: Mapping[tuple[str, str], tuple[dict[str, Any], Mapping[str, Any]]],
    *,
    now: Callable[[], datetime],
) -> None:
    """Patch each object's ``Accepted`` condition where it differs; ``wanted`` maps key -> (condition, object).

    A failure is logged and left for the next change to retry: status is a report, never what is enforced.
    """
    for (namespace, name), (condition, obj) in sorted(wanted.items()):
        status = obj.get("status") or {}
        conditions = [c for c in status.get("conditions") or () if isinstance(c, Mapping)]
        current = next((c for c in conditions if c.get("type") == ACCEPTED), None)
        if current is not None and all(current.get(f) == condition[f] for f in _COMPARED):
            continue
        held = current is not None and current.get("status") == condition["status"]
        stamp = current.get("lastTransitionTime") if held and current else None
        others = [c for c in conditions if c.get("type") != ACCEPTED]
        written = {
            **condition,
            "lastTransitionTime": stamp or now().strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        body = {
            "metadata": {"resourceVersion": (obj.get("metadata") or {}).get("resourceVersion")},
            "status": {"conditions": [*others, written]},
        }
        try:
            await api.patch_custom_status(resource, namespace, name, body)
        except KubernetesUnavailableError as err:
            log.warning(
                "policy.status_failed",
                resource=resource[2],
                namespace=namespace,
                name=name,
                detail=err.detail,
            )
