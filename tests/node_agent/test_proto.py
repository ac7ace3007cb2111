"""Our packaged copy of the Workload API messages matches the standard's, field for field."""

from __future__ import annotations

from typing import Any

import pytest
from spiffe._proto import workload_pb2 as reference

from sigil.node_agent._proto import workload_pb2 as ours

MESSAGES = [
    "X509SVIDRequest",
    "X509SVIDResponse",
    "X509SVID",
    "X509BundlesRequest",
    "X509BundlesResponse",
    "JWTSVIDRequest",
    "JWTSVIDResponse",
    "JWTSVID",
    "JWTBundlesRequest",
    "JWTBundlesResponse",
    "ValidateJWTSVIDRequest",
    "ValidateJWTSVIDResponse",
]


def _shape(descriptor: Any) -> list[tuple[str, int, int, bool, str]]:
    # Names, numbers, wire types, repetition and the short name of any message type: what decides the bytes.
    return sorted(
        (f.name, f.number, f.type, f.is_repeated, f.message_type.name if f.message_type else "")
        for f in descriptor.fields
    )


@pytest.mark.parametrize("name", MESSAGES)
def test_each_message_has_the_standard_fields(name: str) -> None:
    """Every field has the name, number and type of py-spiffe's copy of the standard's proto."""
    assert _shape(ours.DESCRIPTOR.message_types_by_name[name]) == _shape(
        reference.DESCRIPTOR.message_types_by_name[name]
    )


def test_both_copies_live_in_one_process_without_clashing() -> None:
    """Our messages are in a package, so they never collide with py-spiffe's package-less ones."""
    assert ours.X509SVIDRequest.DESCRIPTOR.full_name == "sigil.workload.v1.X509SVIDRequest"
    assert reference.X509SVIDRequest.DESCRIPTOR.full_name == "X509SVIDRequest"
