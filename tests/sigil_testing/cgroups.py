"""Real pod-shaped cgroups for a real process, as kubelet's layout places a container (cgroup v1 ``pids``, as root).

A test that needs one skips, with :func:`why_not_writable` as its reason, where the hierarchy is absent or not
writable.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

__all__ = ["PIDS", "real_cgroup", "why_not_writable"]

PIDS = Path("/sys/fs/cgroup/pids")


def why_not_writable() -> str | None:
    """Why this process cannot make cgroups here, or None when it can."""
    if os.geteuid() != 0:
        return "creating cgroups needs root"
    if not (PIDS / "cgroup.procs").exists():
        return f"no cgroup v1 pids hierarchy at {PIDS}"
    probe = PIDS / f"sigil-probe-{secrets.token_hex(4)}"
    try:
        probe.mkdir()
        probe.rmdir()
    except OSError as err:
        return f"{PIDS} is not writable ({err.strerror})"
    return None


@contextlib.contextmanager
def real_cgroup(relative: str) -> Iterator[Path]:
    """Create ``PIDS/relative`` (and the parents it needs); remove what was created, deepest first."""
    target = PIDS / relative
    created: list[Path] = []
    for directory in [*reversed(target.relative_to(PIDS).parents), target.relative_to(PIDS)]:
        path = PIDS / directory
        if directory != Path(".") and not path.exists():
            path.mkdir()
            created.append(path)
    try:
        yield target
    finally:
        for path in reversed(created):
            # A cgroup can only be removed once empty; another test's cgroup under a shared parent keeps it.
            with contextlib.suppress(OSError):
                path.rmdir()
