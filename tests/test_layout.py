"""The distribution's shape: one ``sigil`` namespace spread over the kit and the four component folders."""

from __future__ import annotations

import importlib

import sigil


def test_sigil_is_a_namespace_package_over_five_folders() -> None:
    """``sigil`` has no ``__init__.py`` and spans kit, ca, issuer, enforcer and node-agent."""
    assert getattr(sigil, "__file__", None) is None
    folders = sorted(path.rsplit("/", 2)[-2] for path in sigil.__path__)
    assert folders == ["ca", "enforcer", "issuer", "kit", "node-agent"]


def test_each_component_imports_under_its_name() -> None:
    """Every component is importable as ``sigil.<name>`` and curates ``__all__``."""
    for name in ("sigil.kit", "sigil.ca", "sigil.issuer", "sigil.enforcer", "sigil.node_agent"):
        module = importlib.import_module(name)
        assert isinstance(module.__all__, list)
        for exported in module.__all__:
            assert hasattr(module, exported), f"{name}.__all__ names {exported} it does not have"
