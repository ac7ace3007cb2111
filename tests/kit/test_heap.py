"""A service's start-up heap kept out of the collector's full passes."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest
from structlog.testing import capture_logs

from sigil.kit import freeze_startup_heap


class _Node:
    other: _Node | None = None


@pytest.fixture(autouse=True)
def _unfreeze() -> Iterator[None]:
    yield
    gc.unfreeze()


def test_what_the_start_built_is_frozen_and_its_garbage_collected_first() -> None:
    """Objects alive at the freeze leave the scanned generations; a dead cycle from the start is freed, not frozen."""
    kept = [[number] for number in range(1000)]
    first, second = _Node(), _Node()
    first.other, second.other = second, first
    dead = weakref.ref(first)
    del first, second
    with capture_logs() as logs:
        frozen = freeze_startup_heap()
    assert dead() is None
    scanned = {id(o) for o in gc.get_objects()}
    assert not any(id(item) in scanned for item in kept)
    assert frozen >= len(kept)
    assert logs == [{"event": "heap.frozen", "objects": frozen, "log_level": "info"}]


def test_what_is_built_after_the_freeze_is_collected_as_before() -> None:
    """A cycle made after the freeze is still found and freed by the next collection."""
    freeze_startup_heap()
    first, second = _Node(), _Node()
    first.other, second.other = second, first
    dead = weakref.ref(first)
    del first, second
    gc.collect()
    assert dead() is None
