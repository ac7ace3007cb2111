"""Fixtures shared by every component's tests."""

from __future__ import annotations
