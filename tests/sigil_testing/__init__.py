"""Test helpers shared by every component's tests: stand-ins for the parts these machines do not have.

Each helper module is self-contained so that one component's tests can import one helper without the others.
"""

from __future__ import annotations

__all__: list[str] = []
