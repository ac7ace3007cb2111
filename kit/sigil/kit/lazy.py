"""Package names imported on first use (PEP 562), so that importing a package does not import all of it.

A package that re-exports names from heavy modules (the enforcer's proxy pulls in aiohttp servers, its TLS
contexts py-spiffe) lists them by module and sets ``__getattr__ = lazy_exports(__name__, {...})``: the module is
imported when a name is first read, and the name is then kept on the package so later reads cost nothing.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, modules: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that imports ``modules[name]`` when ``name`` is first read."""

    def __getattr__(name: str) -> Any:  # noqa: N807 - the name PEP 562 looks for
        module = modules.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
