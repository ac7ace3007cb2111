"""The SPIFFE peers the interop tests run against Sigil: SPIRE's two programs and our go-spiffe client.

All three are built from the Go module proxy by ``tools/build`` (``tools/spire``, ``tools/spiffe-peer``) into the
same cache as kube-apiserver, at once when cached. ``spiffe-peer`` is our own program on go-spiffe (its commands are
described in ``tools/spiffe-peer/main.go``); :func:`go_spiffe` runs one command of it and returns what it printed.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "GoSpiffeError",
    "PeerTools",
    "build_peer_tools",
    "go_spiffe",
    "go_spiffe_argv",
    "go_spiffe_lines",
]

_BUILD = Path(__file__).resolve().parents[2] / "tools" / "build"


class GoSpiffeError(AssertionError):
    """go-spiffe refused what it was given (or the program could not run); the message is the program's own."""


@dataclass(frozen=True, slots=True)
class PeerTools:
    """Paths of the peer binaries."""

    spire_server: Path
    spire_agent: Path
    spiffe_peer: Path


def build_peer_tools() -> PeerTools:
    """Build spire-server, spire-agent and spiffe-peer with ``tools/build``; its progress goes to stderr.

    Raises ``RuntimeError`` naming the command when a build fails (a cold SPIRE build takes ten minutes or more).
    """
    try:
        done = subprocess.run(  # noqa: S603 - our own script, fixed arguments
            [_BUILD, "spire-server", "spire-agent", "spiffe-peer"],
            stdout=subprocess.PIPE,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError) as err:
        raise RuntimeError(f"{_BUILD} spire-server spire-agent spiffe-peer failed: {err}") from err
    server, agent, peer = (Path(line) for line in done.stdout.split())
    return PeerTools(spire_server=server, spire_agent=agent, spiffe_peer=peer)


def go_spiffe_lines(
    tools: PeerTools, command: str, address: str, *args: str, timeout: float = 60
) -> list[dict[str, Any]]:
    """Run ``spiffe-peer COMMAND -addr ADDRESS ARGS`` (ADDRESS: ``unix:///path``): the JSON documents it printed, one per line.

    Raises :class:`GoSpiffeError` with the program's stderr when it exits non-zero.
    """
    done = subprocess.run(  # noqa: S603 - our own program with our own arguments
        [tools.spiffe_peer, command, f"-addr={address}", f"-timeout={timeout}s", *args],
        capture_output=True,
        text=True,
        timeout=timeout + 15,
        check=False,
    )
    if done.returncode != 0:
        raise GoSpiffeError(
            done.stderr.strip() or f"spiffe-peer {command} exited {done.returncode}"
        )
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def go_spiffe(
    tools: PeerTools, command: str, address: str, *args: str, timeout: float = 60
) -> dict[str, Any]:
    """The one JSON document ``spiffe-peer COMMAND`` printed (see :func:`go_spiffe_lines`)."""
    (document,) = go_spiffe_lines(tools, command, address, *args, timeout=timeout)
    return document


def go_spiffe_argv(tools: PeerTools, command: str, address: str, *args: str) -> list[str]:
    """The command line of ``spiffe-peer COMMAND``, for a test that reads its output as it comes (``watch``)."""
    return [str(tools.spiffe_peer), command, f"-addr={address}", *args]
