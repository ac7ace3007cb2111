"""What the issuer client says a refusal means: its reason, whether it is transient, whom it refuses."""

from __future__ import annotations

import pytest

from sigil.issuer.client import AGENT_BANNED, Refusal, error_from_problem
from sigil.issuer.errors import PROBLEMS, IssuerError


def _refusal(reason: str) -> Refusal:
    refusal = Refusal.of(error_from_problem({"reason": reason, "detail": f"said {reason}"}))
    assert refusal is not None
    return refusal


@pytest.mark.parametrize("reason", sorted(PROBLEMS))
def test_every_reason_falls_in_at_most_one_bin(reason: str) -> None:
    """No refusal is at once "not now", a refusal of the workload and a refusal of the agent."""
    refusal = _refusal(reason)
    # A reason without an error class of its own on the client (malformed_csr, a CA error) reads as internal_error.
    assert refusal.reason in {reason, "internal_error"}
    assert refusal.detail == f"said {reason}"
    assert sum([refusal.transient, refusal.refuses_workload, refusal.refuses_agent]) <= 1


@pytest.mark.parametrize(
    ("reason", "transient", "workload", "agent"),
    [
        ("unavailable", True, False, False),
        ("kubernetes_unavailable", True, False, False),
        ("datastore_unavailable", True, False, False),
        ("rate_limited", True, False, False),
        ("not_entitled", False, True, False),
        ("pod_on_other_node", False, True, False),
        ("agent_svid_superseded", False, False, True),
        ("agent_not_attested", False, False, True),
        (AGENT_BANNED, False, False, True),
        ("malformed_request", False, False, False),
    ],
)
def test_the_bins_the_agent_acts_on(
    reason: str, transient: bool, workload: bool, agent: bool
) -> None:
    """The reasons the agent backs off on, denies a workload for, or attests again for, sort as the agent needs."""
    refusal = _refusal(reason)
    assert (refusal.transient, refusal.refuses_workload, refusal.refuses_agent) == (
        transient,
        workload,
        agent,
    )
    assert refusal.banned == (reason == AGENT_BANNED)


def test_a_reason_this_client_does_not_know_is_not_now() -> None:
    """A problem without a known reason becomes a plain IssuerError, which is transient (``internal_error``)."""
    refusal = Refusal.of(error_from_problem({"reason": "from_a_newer_server", "detail": "?"}))
    assert refusal is not None
    assert refusal.transient


def test_a_failure_without_an_answer_is_no_refusal() -> None:
    """An exception the issuer did not send (a refused connection) carries no refusal."""
    assert Refusal.of(ConnectionRefusedError()) is None
    assert Refusal.of(IssuerError("x")) == Refusal("internal_error", "x")
