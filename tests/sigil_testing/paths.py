"""Short temporary directories, for tests that put Unix sockets in them.

An ``AF_UNIX`` path stops near 107 bytes (``sun_path`` in ``sys/un.h`` on Linux), and pytest's ``tmp_path`` under
a long ``$TMPDIR`` or test name can be longer than that; so every directory that may hold a socket comes from
here, directly under ``/tmp`` with a short random name.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["new_short_directory", "short_directory"]

_ROOT = "/tmp"


def new_short_directory(prefix: str = "sg-") -> Path:
    """A fresh private directory with a short path, which the caller removes (or leaves for the OS to)."""
    return Path(tempfile.mkdtemp(dir=_ROOT, prefix=prefix))


@contextmanager
def short_directory(prefix: str = "sg-") -> Iterator[Path]:
    """A fresh private directory with a short path, removed with everything in it on the way out."""
    directory = new_short_directory(prefix)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)
