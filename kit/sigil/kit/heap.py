"""Keeping what a long-running service built at its start out of the garbage collector's full passes.

A service builds most of its heap once: modules, settings, TLS contexts, the first policy set (1,000 policies are
about a million objects). CPython's full (generation 2) collection scans every tracked object each time it runs,
so a large start-up heap makes each full pass long, and the event loop, with every request on it, waits for it:
bench/propagate.py counts 0.2-0.6 s passes on a loaded two-core machine. ``gc.freeze()`` moves everything tracked
so far into a permanent generation the collector no longer scans (https://docs.python.org/3/library/gc.html#gc.freeze,
and CPython's gh-75739 for why it exists); later garbage is collected as before.

What it costs: an object frozen here is never freed by the cycle collector. The start-up heap lives as long as the
process anyway; the part that does not (the first policy set, replaced at the first change) is freed by reference
counting unless it sits in a reference cycle, so the loss is bounded by one start-up's worth, once. The start-up
garbage is collected first, so none of it is frozen.
"""

from __future__ import annotations

import gc

import structlog

__all__ = ["freeze_startup_heap"]

_log = structlog.get_logger(__name__)


def freeze_startup_heap() -> int:
    """Collect the start-up garbage, then freeze what is left; the number of objects now frozen (and logged)."""
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    _log.info("heap.frozen", objects=frozen)
    return frozen
