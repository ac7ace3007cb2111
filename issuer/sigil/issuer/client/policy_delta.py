"""A delta of the policy feed applied to the set the client holds, and checked against the server's digest.

The client names the set it holds (``held_digest``) only when that set's digest checked out
(:attr:`~sigil.issuer.client.results.PolicyUpdate.held`); the server answers what changed since
(:class:`~sigil.issuer.agentapi.contract.PolicyDeltaResponse`), or the whole set when it no longer keeps that one.
:func:`apply_delta` makes the new set and computes its digest; anything that does not add up (a base other than
the one named, a removal of a policy not held, a document that names no policy, a digest that differs) raises
:class:`PolicyDeltaError`, and the caller fetches the whole set instead. So a delta never leaves the client with a
set the server does not hold without it knowing, and the result is never handed out unchecked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from sigil.enforcer.errors import PolicyError
from sigil.enforcer.policy import AcceptedPolicy, PolicyKey, document_key, judge
from sigil.enforcer.policy.origin import origins_of
from sigil.enforcer.policy.schema import Where
from sigil.issuer.agentapi import contract
from sigil.issuer.client.results import HeldPolicies, PolicyUpdate, canonical_text

__all__ = ["PolicyDeltaError", "apply_delta"]


class PolicyDeltaError(ValueError):
    """A delta that does not turn the held set into the server's (``reason`` says how); fetch the whole set."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def apply_delta(
    held: PolicyUpdate,
    body: contract.PolicyDeltaResponse,
    *,
    known: Mapping[str, AcceptedPolicy] | None = None,
) -> PolicyUpdate:
    """The set ``held`` becomes under ``body``, its digest checked; raises :class:`PolicyDeltaError`."""
    base = held.held
    if base is None or body["base_digest"] != held.digest:
        raise PolicyDeltaError(f"a delta from {body['base_digest']!r}, not from the set held")
    if not body["policies"] and not body["removed"] and body["digest"] == held.digest:
        # Nothing moved but the revision (a long poll that timed out, a replica's renumbering).
        if body["namespaces"] or body["removed_namespaces"]:
            raise PolicyDeltaError("namespaces changed under an unchanged digest")
        return dataclasses.replace(held, revision=body["revision"], delta=True, delta_refused=None)
    texts = dict(base.texts)
    documents = dict(base.documents)
    refusals = dict(base.refused)
    origins = dict(held.origins)
    for ref in body["removed"]:
        gone = (ref["kind"], ref["namespace"], ref["name"])
        if texts.pop(gone, None) is None:
            raise PolicyDeltaError(f"removes {gone}, which is not held")
        del documents[gone]
        refusals.pop(gone, None)
        origins.pop(gone, None)
    judged = judge(
        ((document, Where("issuer", n)) for n, document in enumerate(body["policies"])),
        source="issuer",
        known=known,
        from_json=True,  # the body was JSON
    )
    arrived = origins_of(judged.outcomes, body["origins"])
    for document, outcome in zip(body["policies"], judged.outcomes, strict=True):
        key = outcome.key if isinstance(outcome, AcceptedPolicy) else document_key(document)
        if key is None:
            raise PolicyDeltaError("a document that names no policy")
        texts[key] = (
            outcome.canonical if isinstance(outcome, AcceptedPolicy) else canonical_text(document)
        )
        documents[key] = document
        refusals.pop(key, None)
        origins.pop(key, None)
        if isinstance(outcome, PolicyError):
            refusals[key] = outcome
        elif key in arrived:
            origins[key] = arrived[key]
    namespaces = _namespaces(held.namespaces, body)
    if contract.policy_set_digest(texts.values(), namespaces) != body["digest"]:
        raise PolicyDeltaError("the set after the delta does not have the server's digest")
    accepted = _accepted(held, judged.accepted, documents, refusals)
    new_refusals = tuple(o for o in judged.outcomes if isinstance(o, PolicyError))
    order = sorted(documents)
    return PolicyUpdate(
        body["revision"],
        body["digest"],
        accepted,
        tuple(documents[key] for key in order),
        namespaces,
        new_refusals,
        origins,
        HeldPolicies(texts, documents, refusals),
        delta=True,
    )


def _namespaces(
    held: Mapping[str, Mapping[str, str]], body: contract.PolicyDeltaResponse
) -> dict[str, dict[str, str]]:
    namespaces = {ns: dict(labels) for ns, labels in held.items()}
    for gone in body["removed_namespaces"]:
        if namespaces.pop(gone, None) is None:
            raise PolicyDeltaError(f"removes namespace {gone!r}, which is not held")
    namespaces.update((ns, dict(labels)) for ns, labels in body["namespaces"].items())
    return namespaces


def _accepted(
    held: PolicyUpdate,
    arrived: tuple[AcceptedPolicy, ...],
    documents: Mapping[PolicyKey, Mapping[str, Any]],
    refusals: Mapping[PolicyKey, PolicyError],
) -> tuple[AcceptedPolicy, ...]:
    """The accepted policies of the new set in key order: those that arrived, and those held that stay."""
    by_key = {accepted.key: accepted for accepted in held.accepted}
    by_key.update((accepted.key, accepted) for accepted in arrived)
    return tuple(by_key[key] for key in sorted(documents) if key not in refusals)
