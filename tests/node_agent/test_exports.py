"""The agent's subpackages curate ``__all__``: every name they list exists, and each module's public names are there."""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys

import pytest

# attestation exports only its light values (importing it must not pull in aiohttp); these modules are imported
# from where they are.
_IMPORTED_FROM_THEIR_MODULES = {
    "sigil.node_agent.attestation": {"pod_sync", "peer", "attestors"},
}
_PACKAGES = [
    "sigil.node_agent.attestation",
    "sigil.node_agent.svid_cache",
    "sigil.node_agent.upstream",
    "sigil.node_agent.workload_api",
]


@pytest.mark.parametrize("name", _PACKAGES)
def test_every_exported_name_exists(name: str) -> None:
    """A package's ``__all__`` names only what the package has."""
    package = importlib.import_module(name)
    missing = [exported for exported in package.__all__ if not hasattr(package, exported)]
    assert missing == []


@pytest.mark.parametrize("name", _PACKAGES)
def test_every_public_name_of_a_module_is_exported(name: str) -> None:
    """Each public module's ``__all__`` is re-exported by its package, so the package is the one import path."""
    package = importlib.import_module(name)
    skipped = _IMPORTED_FROM_THEIR_MODULES.get(name, set())
    unexported = []
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_") or info.name in skipped:
            continue
        module = importlib.import_module(f"{name}.{info.name}")
        unexported += [f"{info.name}.{n}" for n in module.__all__ if n not in package.__all__]
    assert unexported == []


def test_the_light_exports_do_not_pull_in_the_network_stacks() -> None:
    """Importing the agent's value types loads neither grpclib nor aiohttp (a fresh interpreter checks it)."""
    code = (
        "import sys, sigil.node_agent, sigil.node_agent.attestation;"
        "print(sorted(m for m in ('grpclib', 'aiohttp') if m in sys.modules))"
    )
    out = subprocess.run(  # noqa: S603 -- this interpreter, a fixed script
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def _loaded_in_a_fresh_interpreter(code: str, modules: tuple[str, ...]) -> tuple[list[str], str]:
    """Which of ``modules`` a fresh interpreter has loaded after running ``code``, and what it wrote to stderr."""
    probe = f"print(json.dumps(sorted(m for m in {modules!r} if sys.modules.get(m) is not None)))"
    out = subprocess.run(  # noqa: S603 -- this interpreter, a fixed script
        [sys.executable, "-c", f"import json, sys; {code}; {probe}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout), out.stderr


def test_the_running_agent_does_not_load_what_it_may_never_use() -> None:
    """What ``sigil-agent run`` imports (the agent, its health endpoint, the issuer client) loads no aiohttp, and
    neither PyJWT, an HTTP client nor Envoy's messages, which wait for the first JWT-SVID or SDS call."""
    code = "import sigil.node_agent.agent, sigil.node_agent.health, sigil.issuer.client"
    unused = ("aiohttp", "jwt", "urllib.request", "http.client", "envoy", "xds", "udpa", "validate")
    assert _loaded_in_a_fresh_interpreter(code, unused)[0] == []


def test_the_run_command_keeps_rich_and_greenlet_out_of_the_agent() -> None:
    """``run`` keeps structlog from loading rich and greenlet (both installed here), and the agent still logs."""
    code = (
        "from sigil.node_agent import cli; cli._without_dead_weight(); import sigil.node_agent.agent;"
        "from sigil.kit import configure_logging; import structlog;"
        "configure_logging(); structlog.get_logger().error('probe.logged', n=1)"
    )
    loaded, logged = _loaded_in_a_fresh_interpreter(
        code, ("rich", "pygments", "greenlet", "aiohttp")
    )
    assert loaded == []
    assert "probe.logged" in logged
    assert "n=1" in logged
