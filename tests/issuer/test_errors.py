"""The issuer's error tree: every refusal has a stable reason code and exactly one HTTP answer."""

from __future__ import annotations

from http import HTTPStatus

import sigil.issuer.errors as errors_module
from sigil.ca.errors import MalformedCsrError, TtlError
from sigil.issuer.errors import (
    PROBLEMS,
    AuthenticationError,
    AuthorizationError,
    IssuerError,
    KubernetesUnavailableError,
    TokenNotAuthenticatedError,
    problem_for,
)


def _error_classes() -> list[type[IssuerError]]:
    return [
        obj
        for obj in vars(errors_module).values()
        if isinstance(obj, type) and issubclass(obj, IssuerError) and obj is not IssuerError
    ]


def test_every_error_reason_is_in_the_table_once() -> None:
    """Each leaf error names a reason the one table answers, and no two leaves share a reason."""
    leaves = [
        cls for cls in _error_classes() if cls not in (AuthenticationError, AuthorizationError)
    ]
    reasons = [cls.reason for cls in leaves]
    assert len(reasons) == len(set(reasons))
    assert set(reasons) <= set(PROBLEMS)


def test_branches_decide_the_status_family() -> None:
    """Authentication failures answer 401, authorization failures 403, an unreachable Kubernetes 503."""
    for cls in _error_classes():
        if cls.reason == "internal_error":
            continue
        status = PROBLEMS[cls.reason].status
        if issubclass(cls, AuthenticationError):
            assert status == HTTPStatus.UNAUTHORIZED, cls
        elif issubclass(cls, AuthorizationError):
            assert status == HTTPStatus.FORBIDDEN, cls
    assert KubernetesUnavailableError("x", "y").status == HTTPStatus.SERVICE_UNAVAILABLE


def test_problem_for_maps_issuer_and_ca_errors() -> None:
    """The edge gets a reason and status for the issuer's errors, a malformed CSR, and anything else."""
    assert problem_for(TokenNotAuthenticatedError("nope")) == (
        "token_not_authenticated",
        PROBLEMS["token_not_authenticated"],
    )
    assert problem_for(MalformedCsrError("garbage"))[1].status == HTTPStatus.BAD_REQUEST
    assert problem_for(TtlError("1y", "too long"))[0] == "internal_error"
