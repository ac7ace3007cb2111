"""Hypothesis strategies of Istio AuthorizationPolicy sets, drawn from values that tell Istio's rules apart.

Principals with and without ``spiffe://``, every ``*`` form, aliases and ``cluster.local``, namespaces with
wildcards, service accounts, trust domains, address blocks of both families, ports, HTTP-only fields and
conditions, AUDIT, dry-run and the root namespace: each generated set is something an Istio user could write.
"""

from __future__ import annotations

from typing import Any

from enforcer.istio_docs import Doc, istio_ap, when
from hypothesis import strategies as st

__all__ = ["POLICY_SETS"]

_PRINCIPALS = st.sampled_from(
    [
        "cluster.local/ns/shop/sa/web",
        "example.org/ns/ops/sa/admin",
        "old.org/ns/shop/sa/web",
        "far.org/ns/shop/sa/web",
        "*",
        "*/sa/web",
        "*/ns/shop/sa/web",
        "example.org/ns/shop/*",
        "cluster.local/ns/shop/sa/*",
        "far.org/*",
        "spiffe://example.org/ns/shop/sa/web",
        "*/sa/we b",
        "Example.org/*",
    ]
)
_NAMESPACES = st.sampled_from(["shop", "ops", "prod-*", "*", "sh*"])
_ACCOUNTS = st.sampled_from(["shop/web", "ops/admin", "web", "shop/web-x"])
_DOMAINS = st.sampled_from(["cluster.local", "far.org", "old.org", "example.org"])
_BLOCKS = st.sampled_from(["10.0.0.0/8", "10.1.0.0/16", "10.0.0.5", "192.168.1.1", "2001:db8::/32"])
_PORTS = st.sampled_from(["22", "80", "443", "5432", "8080"])


def _few(values: st.SearchStrategy[str]) -> st.SearchStrategy[list[str]]:
    return st.lists(values, min_size=1, max_size=2, unique=True)


def _fields(options: dict[str, st.SearchStrategy[list[str]]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(sorted(options)), st.just([]), max_size=3).flatmap(
        lambda chosen: st.fixed_dictionaries({k: options[k] for k in chosen})
    )


_SOURCE = _fields(
    {
        "principals": _few(_PRINCIPALS),
        "notPrincipals": _few(_PRINCIPALS),
        "namespaces": _few(_NAMESPACES),
        "notNamespaces": _few(_NAMESPACES),
        "serviceAccounts": _few(_ACCOUNTS),
        "notServiceAccounts": _few(_ACCOUNTS),
        "trustDomains": _few(_DOMAINS),
        "notTrustDomains": _few(_DOMAINS),
        "ipBlocks": _few(_BLOCKS),
        "notIpBlocks": _few(_BLOCKS),
        "requestPrincipals": st.just(["*"]),
    }
)
_OPERATION = _fields(
    {
        "ports": _few(_PORTS),
        "notPorts": _few(_PORTS),
        "methods": st.just(["GET"]),
        "paths": st.just(["/x"]),
    }
)
_WHEN = st.one_of(
    st.builds(lambda v: when("source.ip", v), _few(_BLOCKS)),
    st.builds(lambda v: when("source.ip", not_values=v), _few(_BLOCKS)),
    st.builds(lambda v: when("source.namespace", v), _few(_NAMESPACES)),
    st.builds(lambda v: when("source.principal", not_values=v), _few(_PRINCIPALS)),
    st.builds(lambda v: when("destination.port", v), _few(_PORTS)),
    st.just(when("request.headers[x-user]", ["a"])),
)
_RULE = st.fixed_dictionaries(
    {},
    optional={
        "from": st.lists(_SOURCE.map(lambda s: {"source": s}), max_size=2),
        "to": st.lists(_OPERATION.map(lambda o: {"operation": o}), max_size=2),
        "when": st.lists(_WHEN, max_size=2),
    },
)


@st.composite
def _policy(draw: st.DrawFn, number: int) -> Doc:
    rules = draw(st.one_of(st.none(), st.lists(_RULE, max_size=3)))
    return istio_ap(
        f"p{number}",
        namespace=draw(st.sampled_from(["shop", "ops", "istio-system"])),
        action=draw(st.sampled_from([None, "ALLOW", "DENY", "DENY", "AUDIT"])),
        match=draw(st.sampled_from([None, {"app": "db"}, {"app": "cache"}])),
        rules=rules,
        dry_run=draw(st.sampled_from([False, False, False, True])),
    )


POLICY_SETS = st.integers(min_value=1, max_value=4).flatmap(
    lambda n: st.tuples(*(_policy(i) for i in range(n))).map(list)
)
