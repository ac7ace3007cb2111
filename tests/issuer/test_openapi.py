"""The OpenAPI document at /openapi.json describes every route the issuer serves and every wire body as the contract
spells it, so a route or a field added without the document fails here."""

from __future__ import annotations

import asyncio
import typing
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sigil_testing.issuer import issuer_settings, running_issuer

from sigil.issuer.agentapi import contract
from sigil.issuer.edge.assembly import admin_app, main_app
from sigil.issuer.edge.listeners import IssuerServer
from sigil.issuer.edge.openapi import OPENAPI_PATH, document
from sigil.issuer.edge.openapi_schemas import SCHEMAS
from sigil.issuer.errors import PROBLEMS
from sigil.issuer.tls import client_context


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[IssuerServer]:
    """A running issuer on SQLite without Kubernetes."""
    async with running_issuer(issuer_settings(tmp_path / "data")) as running:
        yield running


def _served(app: web.Application) -> set[tuple[str, str]]:
    """(method, path template) of every route the app serves; HEAD comes with GET."""
    found = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        if route.method != "HEAD" and path:
            # aiohttp writes a constrained variable {verb:evict|ban|unban}; OpenAPI writes {verb}.
            found.add((route.method.lower(), _plain(path)))
    return found


def _plain(path: str) -> str:
    parts = [
        p.split(":")[0] + "}" if p.startswith("{") and ":" in p else p for p in path.split("/")
    ]
    return "/".join(parts)


def _documented() -> set[tuple[str, str]]:
    return {(method, path) for path, ops in document()["paths"].items() for method in ops}


async def test_every_served_route_is_documented_and_every_documented_route_served(
    server: IssuerServer,
) -> None:
    """The main and admin applications serve exactly the document's paths and methods."""
    served = _served(main_app(server.issuer, pollers=[])) | _served(admin_app(server.issuer))
    assert served == _documented()


def _typed_dicts() -> dict[str, Any]:
    return {
        name: value
        for name in contract.__all__
        if typing.is_typeddict(value := getattr(contract, name))
    }


@pytest.mark.parametrize("name", sorted(_typed_dicts()))
def test_each_wire_body_has_a_schema_with_the_same_members(name: str) -> None:
    """Each contract TypedDict has the schema of its name, with its members and its required members."""
    hints = typing.get_type_hints(_typed_dicts()[name], include_extras=True)
    # Read NotRequired from the hints: the contract's string annotations hide it from __required_keys__ on 3.11.
    required = {k for k, hint in hints.items() if typing.get_origin(hint) is not typing.NotRequired}
    schema = SCHEMAS[name]
    assert set(schema["properties"]) == set(hints)
    assert set(schema["required"]) == required


def test_the_problem_schema_lists_every_stable_reason() -> None:
    """The reasons a client may branch on are the one table's, all of them."""
    assert set(SCHEMAS["ProblemBody"]["properties"]["reason"]["enum"]) == set(PROBLEMS)


def test_every_reference_resolves() -> None:
    """Every $ref in the document names a component schema."""
    doc = document()
    refs: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if "$ref" in value:
                refs.append(value["$ref"])
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(doc)
    names = {f"#/components/schemas/{n}" for n in doc["components"]["schemas"]}
    assert refs
    assert set(refs) <= names


async def test_the_document_is_served_on_the_main_listener_and_the_admin_socket(
    server: IssuerServer,
) -> None:
    """GET /openapi.json answers the document on both listeners, without a client certificate."""
    context = await asyncio.to_thread(client_context, server.issuer.ca.bundle())
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.url + OPENAPI_PATH, ssl=context) as reply,
    ):
        assert reply.status == 200
        assert await reply.json() == document()
    connector = aiohttp.UnixConnector(path=str(server.admin_socket))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get("http://sigil" + OPENAPI_PATH) as reply,
    ):
        served = await reply.json()
    assert served["openapi"] == "3.1.0"
    assert served == document()
