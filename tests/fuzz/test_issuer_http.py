"""The issuer's HTTP bodies and query strings from outside: every request gets a 2xx or a problem document with a
stable reason (never a 500, a traceback or a hang), and a refused one changes nothing.

Bodies start from the valid ones of :mod:`sigil.issuer.agentapi.contract` and the admin routes and have members
replaced with any JSON (lone surrogates and numbers past a float included); raw bytes go to every route too.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from fuzz.budget import FUZZ
from fuzz.issuer_world import Answer, IssuerWorld, issuer_world
from hypothesis import example, given
from hypothesis import strategies as st

from sigil.issuer.agentapi import contract
from sigil.issuer.errors import PROBLEMS

_CSR = "@CSR@"  # replaced by the world's CSR, which the strategies cannot know when the module is imported

_AGENT_BODIES: dict[str, dict[str, Any]] = {
    contract.PATH_ATTEST_JOIN_TOKEN: {"token": "not-a-token", "csr": _CSR},
    contract.PATH_ATTEST_K8S: {"token": "x.y.z", "cluster": "test", "csr": _CSR},
    contract.PATH_RENEW: {"csr": _CSR},
    contract.PATH_X509_SVIDS: {
        "requests": [
            {"csr": _CSR, "selectors": ["unix:uid:1"]},
            {"csr": _CSR, "pod": {"namespace": "a", "name": "b", "uid": "c"}},
        ]
    },
    contract.PATH_JWT_SVIDS: {"audience": ["svc"], "selectors": ["unix:uid:1"]},
    contract.PATH_WORKLOAD_X509: {"token": "x.y.z", "csr": _CSR},
}
_ADMIN = "/v1/admin"
_ADMIN_BODIES: dict[str, dict[str, Any]] = {
    _ADMIN + "/authorities/taint": {"kind": "x509", "authority_id": "nope", "force": False},
    _ADMIN + "/authorities/revoke": {"kind": "jwt", "authority_id": "nope"},
    _ADMIN + "/x509/mint": {"spiffe_id": "spiffe://example.org/w", "ttl": 60, "dns": ["a.example"]},
    _ADMIN + "/jwt/mint": {"spiffe_id": "spiffe://example.org/w", "audience": ["a"], "ttl": 60},
    _ADMIN + "/entries": {
        "spiffe_id": "spiffe://example.org/w",
        "parent_id": "spiffe://example.org/agent",
        "selectors": ["unix:uid:1"],
        "dns": [],
    },
    _ADMIN + "/tokens": {"ttl": 60},
    _ADMIN + "/policies": {"file": "fuzz.yaml", "text": "kind: AuthorizationPolicy\n"},
    _ADMIN + "/agents/evict": {"agent_id": "spiffe://example.org/sigil/agent/join/x"},
    _ADMIN + "/agents/unban": {"agent_id": "spiffe://example.org/sigil/agent/join/x"},
}
_ADMIN_QUERIES: dict[str, list[str]] = {
    _ADMIN + "/authorities/show": ["authority_id"],
    _ADMIN + "/bundle": ["format"],
    _ADMIN + "/policies/effective": ["pod", "labels", "port", "default"],
    _ADMIN + "/agents/show": ["agent_id"],
}
_AGENT_QUERIES: dict[str, list[str]] = {
    contract.PATH_BUNDLE: ["after_sequence", "wait", "after_revision"],
    contract.PATH_POLICIES: ["after_revision", "held_digest", "wait"],
    contract.PATH_NODE_PODS: ["after_revision", "wait", "node"],
}

_ODD_TEXT = st.sampled_from(
    [
        "",
        "\ud800",
        "\x00",
        "spiffe://",
        "spiffe://example.org/" + "a" * 3000,
        "²",
        "١٢",
        "-1",
        "1e999",
        "NaN",
    ]
)
_LEAF = (
    st.none()
    | st.booleans()
    | st.integers(-(2**80), 10**400)
    | st.floats()
    | st.text(max_size=30)
    | _ODD_TEXT
)
_JSON = st.recursive(
    _LEAF,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=10,
)
_QUERY_VALUE = st.text(max_size=20) | st.sampled_from(
    ["0", "1", "1e308", "inf", "-0", "0x10", "²", "65536", "a=b"]
)


def _paths(value: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [here]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*here, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*here, index))
    return found


@st.composite
def _mutated(draw: st.DrawFn, template: dict[str, Any]) -> Any:
    document: Any = copy.deepcopy(template)
    for _ in range(draw(st.integers(0, 4))):
        path = draw(st.sampled_from(_paths(document)))
        if not path:
            document = draw(_JSON)
            continue
        parent = document
        for step in path[:-1]:
            parent = parent[step]
        if draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(_JSON)
    return document


def _body(world: IssuerWorld, document: Any) -> bytes:
    return json.dumps(document).replace(json.dumps(_CSR), json.dumps(world.csr)).encode()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IssuerWorld]:
    with issuer_world(tmp_path_factory.mktemp("issuer") / "data") as running:
        yield running


def _check_items(answer: Answer) -> None:
    """A batch read as a whole still answers item by item: every item problem has a stable reason too."""
    if answer.status == 200 and isinstance(answer.body, dict):
        for item in answer.body.get("results", []):
            if "problem" in item:
                assert item["problem"]["reason"] in PROBLEMS
                assert item["problem"]["reason"] != "internal_error", item


def _admin_state(world: IssuerWorld) -> list[Any]:
    return [
        world.send("GET", _ADMIN + path, admin=True).body
        for path in ("/entries", "/agents", "/authorities", "/policies")
    ]


@FUZZ
@given(
    st.sampled_from(sorted(_AGENT_BODIES)).flatmap(
        lambda path: st.tuples(st.just(path), _mutated(_AGENT_BODIES[path]))
    ),
    st.booleans(),
)
@example((contract.PATH_X509_SVIDS, {"requests": [{"csr": "\ud800", "selectors": []}]}), True)
@example((contract.PATH_ATTEST_JOIN_TOKEN, {"token": "t", "csr": "\ud800"}), False)
def test_agent_api_bodies_are_answered_or_refused(
    world: IssuerWorld, request_: tuple[str, Any], agent: bool
) -> None:
    """Any JSON body on an agent route, with or without the agent's SVID: 2xx or a stable refusal; a refusal
    issues no SVID."""
    path, document = request_
    before = world.issued()
    answer = world.send("POST", path, _body(world, document), agent=agent)
    answer.assert_refusal_or_success()
    _check_items(answer)
    if answer.status >= 400:
        assert world.issued() == before


@FUZZ
@given(st.sampled_from(sorted(_AGENT_BODIES) + sorted(_ADMIN_BODIES)), st.binary(max_size=300))
@example(contract.PATH_X509_SVIDS, b"[" * 50_000)
@example(contract.PATH_RENEW, b'{"csr": "\\ud800"}')
@example(_ADMIN + "/tokens", b'{"ttl": 1' + b"0" * 400 + b"}")
@example(_ADMIN + "/tokens", b'{"ttl": 1e400}')
def test_raw_bytes_on_every_body_route_are_refused(
    world: IssuerWorld, path: str, data: bytes
) -> None:
    """Bytes that are not JSON (or barely are) get a stable 4xx on every route that reads a body."""
    answer = world.send("POST", path, data, admin=path.startswith(_ADMIN))
    answer.assert_refusal_or_success()


@FUZZ
@given(
    st.sampled_from(sorted(_AGENT_QUERIES)).flatmap(
        lambda path: st.tuples(
            st.just(path), st.dictionaries(st.sampled_from(_AGENT_QUERIES[path]), _QUERY_VALUE)
        )
    ),
    st.booleans(),
)
def test_agent_api_query_strings_are_answered_or_refused(
    world: IssuerWorld, request_: tuple[str, dict[str, str]], agent: bool
) -> None:
    """Any query string on the long-poll routes: 2xx or a stable refusal, within the poll limit (no hang)."""
    path, query = request_
    world.send("GET", path, query=query, agent=agent).assert_refusal_or_success()


@FUZZ
@given(
    st.sampled_from(sorted(_ADMIN_BODIES)).flatmap(
        lambda path: st.tuples(st.just(path), _mutated(_ADMIN_BODIES[path]))
    )
)
@example((_ADMIN + "/x509/mint", {"spiffe_id": "spiffe://example.org/w", "ttl": 10**400}))
@example((_ADMIN + "/jwt/mint", {"spiffe_id": "spiffe://example.org/w", "audience": None}))
@example((_ADMIN + "/jwt/mint", {"spiffe_id": "spiffe://example.org", "audience": ["a"]}))
@example(
    (
        _ADMIN + "/entries",
        {"spiffe_id": "nope", "parent_id": "spiffe://example.org/a", "selectors": ["a:b"]},
    )
)
def test_admin_bodies_are_answered_or_refused_without_changing_state(
    world: IssuerWorld, request_: tuple[str, Any]
) -> None:
    """Any JSON body on an admin verb: 2xx or a stable refusal, and a refusal leaves entries, agents, authorities
    and policies as they were."""
    path, document = request_
    before = _admin_state(world)
    answer = world.send("POST", path, _body(world, document), admin=True)
    answer.assert_refusal_or_success()
    if answer.status >= 400:
        assert _admin_state(world) == before


@FUZZ
@given(
    st.sampled_from(sorted(_ADMIN_QUERIES)).flatmap(
        lambda path: st.tuples(
            st.just(path), st.dictionaries(st.sampled_from(_ADMIN_QUERIES[path]), _QUERY_VALUE)
        )
    )
)
@example((_ADMIN + "/policies/effective", {"pod": "a/b", "port": "²"}))
@example((_ADMIN + "/policies/effective", {"pod": "a/b", "port": "99999"}))
def test_admin_query_strings_are_answered_or_refused(
    world: IssuerWorld, request_: tuple[str, dict[str, str]]
) -> None:
    """Any query string on an admin read: 2xx or a stable refusal."""
    path, query = request_
    world.send("GET", path, query=query, admin=True).assert_refusal_or_success()


def test_a_caller_gone_in_the_middle_of_its_body_leaves_no_traceback(
    world: IssuerWorld, caplog: pytest.LogCaptureFixture
) -> None:
    """A body cut short by a caller that hangs up is a quiet refusal, and the server goes on serving."""
    host, port = world.server.url.removeprefix("https://").split(":")

    async def hang_up() -> None:
        _reader, writer = await asyncio.open_connection(
            host, int(port), ssl=world.agent_tls, server_hostname="localhost"
        )
        writer.write(
            b"POST " + contract.PATH_X509_SVIDS.encode() + b" HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n" + b'{"requests": ['
        )
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.transport.abort()
        await asyncio.sleep(0.2)

    with caplog.at_level(logging.ERROR, logger="aiohttp.server"):
        world.loop.run(hang_up())
    assert not [r for r in caplog.records if r.name == "aiohttp.server"]
    world.send("GET", contract.PATH_BUNDLE).assert_refusal_or_success()
