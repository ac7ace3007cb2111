"""One Istio rule as Sigil rules, with what plain TCP makes of its HTTP-only fields.

A rule matches when one of its ``from`` sources, one of its ``to`` operations and every ``when`` condition
match (an omitted or empty ``from``/``to`` matches anything). Each (source, operation) pair becomes one Sigil
rule: the source's fields AND-ed (``AllOf``, spread over the OR-ed values of each field), its ``not*`` fields
as ``notSources``/``exceptSourceCIDRs``, the operation's ports as ``ports``/``exceptPorts``.

On TCP istiod cannot build an HTTP-only matcher (``pilot/pkg/security/authz/model/model.go``, ``checkError``): in an
ALLOW policy the whole rule is dropped (so it never matches, and the policy still denies what it does not
allow); in a DENY or AUDIT policy each HTTP-only value is skipped (so the rule matches more). The translation
does the same and says so. ``destination.ip``, ``connection.sni`` and Envoy metadata conditions do work on TCP
but Sigil has nothing to say them with: the rule is dropped from an ALLOW policy and the condition from a DENY
one, both failing closed, and refused in the report.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sigil.enforcer.policy.dialects.base import Exactness
from sigil.enforcer.policy.dialects.istio.conditions import (
    Conditions,
    parse_networks,
    parse_ports,
    sigil_rules,
)
from sigil.enforcer.policy.dialects.istio.fields import (
    RuleError,
    check_known,
    l7_fields,
    list_of,
    mapping_of,
    strings_of,
)
from sigil.enforcer.policy.dialects.istio.identities import (
    TrustDomains,
    namespace_sources,
    principal_sources,
    service_account_sources,
    trust_domain_sources,
)

__all__ = ["Note", "RuleError", "translate_rule"]

SigilRule = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Note:
    """A finding about one field of the rule."""

    path: str
    exactness: Exactness
    message: str


def translate_rule(
    rule: object, path: str, *, allow: bool, namespace: str, domains: TrustDomains
) -> tuple[list[SigilRule], list[Note]]:
    """The Sigil rules for Istio rule ``rule`` at ``path`` of an ALLOW (``allow``) or DENY/AUDIT policy."""
    raw = mapping_of(rule, path)
    check_known(raw, ("from", "to", "when"), path)
    sources = [
        mapping_of(entry, f"{path}.from[{i}]") for i, entry in enumerate(list_of(raw, "from", path))
    ]
    operations = [
        mapping_of(entry, f"{path}.to[{i}]") for i, entry in enumerate(list_of(raw, "to", path))
    ]
    conditions = [
        mapping_of(entry, f"{path}.when[{i}]") for i, entry in enumerate(list_of(raw, "when", path))
    ]
    http, unsayable = l7_fields(sources, operations, conditions, path)
    notes: list[Note] = []
    if allow and (http or unsayable):
        for where, what in http:
            notes.append(
                Note(
                    where,
                    Exactness.APPROXIMATE,
                    f"{what} cannot match on TCP: as in Istio, "
                    "this ALLOW rule never matches and is left out (the policy still denies what it "
                    "does not allow)",
                )
            )
        for where, what in unsayable:
            notes.append(
                Note(
                    where,
                    Exactness.REFUSED,
                    f"Sigil cannot match {what}: the rule is left out, so "
                    "connections it would have allowed are denied",
                )
            )
        return [], notes
    notes.extend(_remote_notes(sources, conditions, path))
    for where, what in http:
        notes.append(
            Note(
                where,
                Exactness.APPROXIMATE,
                f"{what} cannot match on TCP: as in Istio, this DENY "
                "rule is applied without them, so it matches more connections",
            )
        )
    for where, what in unsayable:
        notes.append(
            Note(
                where,
                Exactness.REFUSED,
                f"Sigil cannot match {what}: the DENY rule is applied "
                "without this condition, so it denies more connections than in Istio",
            )
        )
    base = Conditions()
    for index, condition in enumerate(conditions):
        base = _when(base, condition, f"{path}.when[{index}]", namespace, domains)
    froms = [
        _source(Conditions(), source["source"], f"{path}.from[{i}].source", namespace, domains)
        if source.get("source") is not None
        else Conditions()
        for i, source in enumerate(sources)
    ] or [Conditions()]
    tos = [
        _operation(Conditions(), operation["operation"], f"{path}.to[{i}].operation")
        if operation.get("operation") is not None
        else Conditions()
        for i, operation in enumerate(operations)
    ] or [Conditions()]
    out: list[SigilRule] = []
    for left, right in itertools.product(froms, tos):
        combined = base.merge(left).merge(right)
        if combined.satisfiable:
            out.extend(r for r in sigil_rules(combined, path) if r not in out)
    return out, notes


def _remote_notes(
    sources: Sequence[Mapping[str, Any]], conditions: Sequence[Mapping[str, Any]], path: str
) -> list[Note]:
    """Istio's remote address comes from X-Forwarded-For or the PROXY protocol when present; Sigil sees the peer."""
    paths = [
        f"{path}.from[{i}].source.{key}"
        for i, entry in enumerate(sources)
        for key in ("remoteIpBlocks", "notRemoteIpBlocks")
        if (entry.get("source") or {}).get(key)
    ]
    paths += [f"{path}.when[{i}]" for i, c in enumerate(conditions) if c.get("key") == "remote.ip"]
    return [
        Note(
            where,
            Exactness.APPROXIMATE,
            "compared with the connection's peer address; Istio uses the client address from the PROXY "
            "protocol or X-Forwarded-For when there is one",
        )
        for where in paths
    ]


def _identity(
    conditions: Conditions,
    key: str,
    values: Sequence[str],
    negated: bool,
    path: str,
    namespace: str,
    domains: TrustDomains,
) -> Conditions:
    if not values:
        return conditions
    try:
        if key == "trustDomains":
            found = list(trust_domain_sources(values, domains))
        else:
            found = []
            for value in values:
                if key == "principals":
                    more = principal_sources(value, domains)
                elif key == "namespaces":
                    more = namespace_sources(value)
                else:
                    more = service_account_sources(value, namespace)
                found.extend(s for s in more if s not in found)
    except ValueError as err:
        raise RuleError(f"{path}: {err}") from err
    return conditions.exclude(found) if negated else conditions.require(found)


def _source(
    conditions: Conditions, source: object, path: str, namespace: str, domains: TrustDomains
) -> Conditions:
    raw = mapping_of(source, path)
    if (raw.get("serviceAccounts") or raw.get("notServiceAccounts")) and any(
        raw.get(key) for key in ("principals", "notPrincipals", "namespaces", "notNamespaces")
    ):
        raise RuleError(
            f"{path}: Istio does not accept serviceAccounts together with principals or namespaces"
        )
    for key in ("principals", "namespaces", "serviceAccounts", "trustDomains"):
        not_key = "not" + key[0].upper() + key[1:]
        conditions = _identity(
            conditions, key, strings_of(raw, key, path), False, f"{path}.{key}", namespace, domains
        )
        conditions = _identity(
            conditions,
            key,
            strings_of(raw, not_key, path),
            True,
            f"{path}.{not_key}",
            namespace,
            domains,
        )
    for key in ("ipBlocks", "remoteIpBlocks"):
        not_key = "not" + key[0].upper() + key[1:]
        if raw.get(key):
            conditions = conditions.within(
                parse_networks(strings_of(raw, key, path), f"{path}.{key}")
            )
        conditions = conditions.outside(
            parse_networks(strings_of(raw, not_key, path), f"{path}.{not_key}")
        )
    return conditions


def _operation(conditions: Conditions, operation: object, path: str) -> Conditions:
    raw = mapping_of(operation, path)
    if raw.get("ports"):
        conditions = conditions.on_ports(
            parse_ports(strings_of(raw, "ports", path), f"{path}.ports")
        )
    return conditions.off_ports(parse_ports(strings_of(raw, "notPorts", path), f"{path}.notPorts"))


_WHEN_FIELD = {
    "source.principal": "principals",
    "source.namespace": "namespaces",
    "source.serviceAccount": "serviceAccounts",
}


def _when(
    conditions: Conditions,
    condition: Mapping[str, Any],
    path: str,
    namespace: str,
    domains: TrustDomains,
) -> Conditions:
    key = condition["key"]
    values, not_values = (
        strings_of(condition, "values", path),
        strings_of(condition, "notValues", path),
    )
    if key in _WHEN_FIELD:
        field = _WHEN_FIELD[key]
        conditions = _identity(
            conditions, field, values, False, f"{path}.values", namespace, domains
        )
        return _identity(
            conditions, field, not_values, True, f"{path}.notValues", namespace, domains
        )
    if key in ("source.ip", "remote.ip"):
        if values:
            conditions = conditions.within(parse_networks(values, f"{path}.values"))
        return conditions.outside(parse_networks(not_values, f"{path}.notValues"))
    if key == "destination.port":
        if values:
            conditions = conditions.on_ports(parse_ports(values, f"{path}.values"))
        return conditions.off_ports(parse_ports(not_values, f"{path}.notValues"))
    return conditions  # HTTP-only or unsayable: reported by l7_fields, ignored here (DENY only)
