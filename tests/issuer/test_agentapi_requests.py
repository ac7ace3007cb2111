"""Agent API request bodies parsed on the server: typed values, or a 400 that names what was wrong."""

from __future__ import annotations

from typing import Any

import pytest

from sigil.issuer.agentapi.contract import MAX_BATCH
from sigil.issuer.agentapi.requests import (
    AttestK8s,
    JwtSvids,
    PodName,
    Renew,
    Subject,
    TokenAndCsr,
    X509Batch,
)
from sigil.issuer.errors import MalformedRequestError


def test_well_formed_bodies_parse_into_frozen_values() -> None:
    """Each body's members arrive as typed, immutable fields."""
    assert AttestK8s.parse({"token": "t", "cluster": "c", "csr": "r"}) == AttestK8s("t", "c", "r")
    assert TokenAndCsr.parse({"token": "t", "csr": "r"}) == TokenAndCsr("t", "r")
    assert Renew.parse({"csr": "r"}) == Renew("r")
    pod = {"namespace": "ns", "name": "p", "uid": "u"}
    assert Subject.parse({"pod": pod}) == Subject(PodName("ns", "p", "u"), None, None)
    assert Subject.parse({"selectors": ["k8s:ns:a"], "spiffe_id": "spiffe://td/a"}) == Subject(
        None, ("k8s:ns:a",), "spiffe://td/a"
    )
    jwt = JwtSvids.parse({"audience": ["db"], "selectors": []})
    assert (jwt.audience, jwt.subject.selectors) == (("db",), ())
    with pytest.raises(AttributeError):
        jwt.audience = ("other",)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("parse", "document", "message"),
    [
        (Renew.parse, {}, "'csr' must be a non-empty string"),
        (
            AttestK8s.parse,
            {"token": "t", "cluster": 7, "csr": "r"},
            "'cluster' must be a non-empty string",
        ),
        (Subject.parse, {}, "each item names either 'pod' or 'selectors'"),
        (
            Subject.parse,
            {"pod": {}, "selectors": []},
            "each item names either 'pod' or 'selectors'",
        ),
        (Subject.parse, {"pod": "ns/p"}, "'pod' must be an object"),
        (
            Subject.parse,
            {"pod": {"namespace": "ns", "name": "p"}},
            "'uid' must be a non-empty string",
        ),
        (Subject.parse, {"selectors": "k8s:ns:a"}, "'selectors' must be a list of strings"),
        (Subject.parse, {"selectors": [], "spiffe_id": 3}, "'spiffe_id' must be a string"),
        (
            JwtSvids.parse,
            {"audience": [], "selectors": []},
            "'audience' must be a non-empty list of strings",
        ),
        (X509Batch.parse, {"requests": [1]}, "'requests' must be a list of objects"),
        (
            X509Batch.parse,
            {"requests": [{}] * (MAX_BATCH + 1)},
            f"at most {MAX_BATCH} items per batch",
        ),
    ],
)
def test_a_malformed_body_names_the_member_and_the_rule(
    parse: Any, document: dict[str, Any], message: str
) -> None:
    """A body that breaks the contract is a MalformedRequestError (400) saying which member and why."""
    with pytest.raises(MalformedRequestError) as refused:
        parse(document)
    assert refused.value.why == message


def test_a_batch_keeps_items_raw_and_blanks_a_missing_csr() -> None:
    """A batch is parsed whole, its items one by one later; an item without a CSR text offers an empty one."""
    batch = X509Batch.parse({"requests": [{"csr": "r", "selectors": []}, {"csr": 5}]})
    assert len(batch.items) == 2
    assert batch.csrs() == ["r", ""]
