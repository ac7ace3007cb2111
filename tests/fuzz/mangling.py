"""Hypothesis strategies that damage a valid input the ways a broken or hostile peer does.

A parser fuzzed with random bytes alone rarely gets past its first check; starting from a valid CSR, token or
document and damaging it a little reaches the checks behind the first one.
"""

from __future__ import annotations

from hypothesis import strategies as st

__all__ = ["mangled"]


@st.composite
def _damage(draw: st.DrawFn, data: bytes) -> bytes:
    if not data:
        return draw(st.binary(max_size=64))
    kind = draw(st.sampled_from(["flip", "cut", "insert", "delete", "repeat", "splice"]))
    at = draw(st.integers(0, len(data) - 1))
    if kind == "flip":
        return data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
    if kind == "cut":
        return data[:at]
    if kind == "insert":
        return data[:at] + draw(st.binary(min_size=1, max_size=16)) + data[at:]
    if kind == "delete":
        return data[:at] + data[at + draw(st.integers(1, 16)) :]
    if kind == "repeat":
        return data[:at] + data[at:] * draw(st.integers(2, 3))
    end = draw(st.integers(at, len(data)))
    return data[:at] + data[end:at:-1] + data[end:]


def mangled(data: bytes) -> st.SearchStrategy[bytes]:
    """``data`` with one to four damages applied (a flip, a cut, an insertion, a deletion, a repeat, a splice)."""

    @st.composite
    def _apply(draw: st.DrawFn) -> bytes:
        out = data
        for _ in range(draw(st.integers(1, 4))):
            out = draw(_damage(out))
        return out

    return _apply()
