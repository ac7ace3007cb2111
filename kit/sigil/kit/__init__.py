"""The bottom layer every Sigil component may import: owned tasks, backoff, revisioned values, logging, the heap.

Each mechanism here was written several times across the components; it now lives once, with its own tests. The
kit imports nothing of Sigil and no database, Kubernetes or network library (an import-linter contract checks it),
so the certificate authority and the enforcer can use it as freely as the services.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sigil.kit.lazy import lazy_exports

if TYPE_CHECKING:
    from sigil.kit.backoff import Backoff
    from sigil.kit.heap import freeze_startup_heap
    from sigil.kit.logs import LOG_LEVELS, configure_logging, level_number, parse_log_level
    from sigil.kit.revision import Revisioned
    from sigil.kit.tasks import Service, TaskOwner

__all__ = [
    "LOG_LEVELS",
    "Backoff",
    "Revisioned",
    "Service",
    "TaskOwner",
    "configure_logging",
    "freeze_startup_heap",
    "level_number",
    "parse_log_level",
]

# Each name is imported when first read, so importing one light module of the kit (``sigil.kit.lazy``, which
# the agent's packages use to stay light) does not load structlog for the logs.
__getattr__ = lazy_exports(
    __name__,
    {
        "Backoff": "sigil.kit.backoff",
        "LOG_LEVELS": "sigil.kit.logs",
        "configure_logging": "sigil.kit.logs",
        "freeze_startup_heap": "sigil.kit.heap",
        "level_number": "sigil.kit.logs",
        "parse_log_level": "sigil.kit.logs",
        "Revisioned": "sigil.kit.revision",
        "Service": "sigil.kit.tasks",
        "TaskOwner": "sigil.kit.tasks",
    },
)
