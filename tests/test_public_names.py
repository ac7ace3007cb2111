"""Every module's public surface: each package curates ``__all__``, and every ``__all__`` is complete and true."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest
from aiohttp import web

import sigil


def _modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(sigil.__path__, prefix="sigil."):
        # Generated gRPC code and alembic's migration scripts are not our public surface.
        if "._proto" in info.name or ".migrations" in info.name:
            continue
        names.append(info.name)
    return sorted(names)


MODULES = _modules()


def _defined_here(module: ModuleType) -> set[str]:
    """The public classes and functions a module defines itself (not the ones it imports).

    HTTP handlers registered in one of a module's aiohttp route tables are reached through that table, which is
    what the module exports, so they are not counted.
    """
    tables = [value for value in vars(module).values() if isinstance(value, web.RouteTableDef)]
    handlers = {
        id(route.handler) for table in tables for route in table if isinstance(route, web.RouteDef)
    }
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and getattr(value, "__module__", None) == module.__name__
        and id(value) not in handlers
    }


@pytest.mark.parametrize("name", MODULES)
def test_every_name_in_all_exists(name: str) -> None:
    """A name listed in ``__all__`` can be imported from the module that lists it."""
    module = importlib.import_module(name)
    missing = [n for n in getattr(module, "__all__", []) if not hasattr(module, n)]
    assert missing == [], f"{name}.__all__ lists names it does not have: {missing}"


@pytest.mark.parametrize("name", MODULES)
def test_all_lists_every_public_definition(name: str) -> None:
    """A module with ``__all__`` lists every public class and function it defines, so ``__all__`` is the surface."""
    module = importlib.import_module(name)
    if not hasattr(module, "__all__"):
        pytest.skip(f"{name} has no __all__")
    unlisted = sorted(_defined_here(module) - set(module.__all__))
    assert unlisted == [], f"{name} defines public names missing from __all__: {unlisted}"


@pytest.mark.parametrize(
    "name", [n for n in MODULES if hasattr(importlib.import_module(n), "__path__")]
)
def test_every_package_curates_all(name: str) -> None:
    """Every package says what it exports with ``__all__``."""
    assert isinstance(getattr(importlib.import_module(name), "__all__", None), list)
