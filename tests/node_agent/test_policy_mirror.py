"""The agent's mirror of the issuer's policies: each revision adopted, unchanged documents never parsed again."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

from enforcer.policy_docs import ap, cap
from structlog.testing import capture_logs

from sigil.enforcer.policy import AcceptedPolicy
from sigil.issuer.agentapi import contract
from sigil.issuer.client import PolicyUpdate
from sigil.node_agent.policies import PolicyMirror
from sigil.node_agent.policies.mirror import POLICY_FILE
from sigil.node_agent.rotation import Backoff


class _Issuer:
    """The issuer's policy feed as the mirror calls it: one body per revision, in turn."""

    def __init__(self, *bodies: dict[str, Any]) -> None:
        self._bodies = list(bodies)
        #: The set each request named as its base.
        self.held: list[PolicyUpdate | None] = []

    async def policies(
        self,
        after_revision: int | None = None,
        *,
        wait: float | None = None,
        known: Mapping[str, AcceptedPolicy] | None = None,
        held: PolicyUpdate | None = None,
    ) -> PolicyUpdate:
        self.held.append(held)
        return PolicyUpdate.parse(cast(contract.PolicyResponse, self._bodies.pop(0)), known=known)


def _body(revision: int, *documents: dict[str, Any]) -> dict[str, Any]:
    return {
        "revision": revision,
        "digest": f"d{revision}",
        "policies": list(documents),
        "namespaces": {},
    }


def _mirror(issuer: _Issuer, directory: Path | None = None) -> PolicyMirror:
    backoff = Backoff(initial=timedelta(seconds=0.01), maximum=timedelta(seconds=0.1))
    return PolicyMirror(issuer, wait=0, backoff=backoff, directory=directory)


async def test_an_unchanged_document_keeps_the_policy_parsed_before() -> None:
    """A new revision that changes one policy reuses the other, already parsed, as the very same object."""
    mirror = _mirror(_Issuer(_body(1, ap("a"), cap("c")), _body(2, ap("a"), cap("c", priority=20))))
    assert await mirror.refresh()
    assert mirror.state is not None
    first = {entry.key: entry for entry in mirror.state.entries}
    assert await mirror.refresh()
    assert mirror.state is not None
    second = {entry.key: entry for entry in mirror.state.entries}
    kept, changed = ("AuthorizationPolicy", "shop", "a"), ("ClusterAuthorizationPolicy", "", "c")
    assert second[kept] is first[kept]
    assert second[changed].policy != first[changed].policy


async def test_the_stored_set_is_the_canonical_documents(tmp_path: Path) -> None:
    """A restarted agent reads back exactly the documents, and so the snapshots, it served before."""
    mirror = _mirror(_Issuer(_verifiable(3, cap("c"), ap("a"))), tmp_path)
    assert await mirror.refresh()
    restarted = _mirror(_Issuer(), tmp_path)
    assert await restarted.load_stored()
    assert mirror.state is not None
    assert restarted.state is not None
    assert [e.canonical for e in restarted.state.entries] == [
        e.canonical for e in mirror.state.entries
    ]
    assert restarted.state.revision == 3


async def test_the_stored_file_is_the_wire_body(tmp_path: Path) -> None:
    """The file, written from each policy's canonical text, decodes to exactly the state's wire body."""
    namespaces = {"shop": {"team": "a"}}
    body = {**_body(4, ap("a"), cap("c")), "namespaces": namespaces}
    mirror = _mirror(_Issuer(body), tmp_path)
    assert await mirror.refresh()
    assert mirror.state is not None
    stored = json.loads((tmp_path / POLICY_FILE).read_text(encoding="utf-8"))
    assert stored == mirror.state.wire()
    assert stored["namespaces"] == namespaces


def _verifiable(revision: int, *documents: dict[str, Any]) -> dict[str, Any]:
    """A body whose digest is the issuer's digest of its documents (as canonical text) and namespaces."""
    texts = [json.dumps(d, sort_keys=True, separators=(",", ":")) for d in documents]
    return {**_body(revision, *documents), "digest": contract.policy_set_digest(texts, {})}


async def test_each_request_names_the_set_held_as_its_base(tmp_path: Path) -> None:
    """The first request names no set; the next names the last update, whose digest checked out."""
    issuer = _Issuer(_verifiable(1, ap("a")), _verifiable(2, ap("a"), cap("c")))
    mirror = _mirror(issuer, tmp_path)
    assert await mirror.refresh()
    assert await mirror.refresh()
    first, second = issuer.held
    assert first is None
    assert second is not None
    assert second.revision == 1
    assert second.held is not None


async def test_a_stored_set_is_served_and_named_as_a_base_only_when_its_digest_checks_out(
    tmp_path: Path,
) -> None:
    """A restarted agent serves its stored set and names it to the issuer when the set is what its digest says;
    a file changed since is neither served nor named (enforcers wait for the issuer's whole set)."""
    assert await _mirror(_Issuer(_verifiable(3, ap("a"), cap("c"))), tmp_path).refresh()
    issuer = _Issuer(_verifiable(4, ap("a")))
    restarted = _mirror(issuer, tmp_path)
    assert await restarted.load_stored()
    assert restarted.state is not None
    assert restarted.state.revision == 3
    assert await restarted.refresh()
    [held] = issuer.held
    assert held is not None
    assert held.held is not None
    assert held.revision == 3

    stored = tmp_path / POLICY_FILE
    stored.write_text(stored.read_text(encoding="utf-8").replace('"shop"', '"other"'), "utf-8")
    issuer = _Issuer(_verifiable(5, ap("a")))
    tampered = _mirror(issuer, tmp_path)
    with capture_logs() as logs:
        assert not await tampered.load_stored()
    assert [tampered.state] == [None]  # (a list: mypy would keep the narrowing past refresh)
    assert [e["event"] for e in logs] == [
        "stored policies do not match their digest; waiting for the issuer"
    ]
    assert await tampered.refresh()
    [held] = issuer.held
    assert held is None  # no base: the issuer answers the whole set
    assert tampered.state is not None
    assert tampered.state.revision == 5
