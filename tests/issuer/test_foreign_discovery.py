"""The issuer asks the API server again which of Istio's and Linkerd's kinds it serves, and follows the changes.

The real API server covers installing and deleting a CRD (``tests/integration/test_foreign_crds.py``). What it
cannot be made to do on demand is what these tests hold the watch to: a group missing from one discovery and back
at the next (an API server just started, its CRDs not loaded yet), a kind's preferred version changing, and a
discovery that fails. So the API here is a stand-in answering discovery and one collection per path, and the
feed records what it is given; the toy dialect translates under Istio's group."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

import pytest
from enforcer.toy_dialect import toy
from sigil_testing.waiting import eventually

from enforcer import toy_dialect
from sigil.enforcer.policy.dialects import base
from sigil.enforcer.policy.dialects.base import TranslateOptions
from sigil.issuer.errors import KubernetesUnavailableError
from sigil.issuer.kube.api import KubeApi
from sigil.issuer.policies.feed import PolicyFeed
from sigil.issuer.policies.foreign_crds import ForeignPolicyWatch

GROUP = "security.istio.io"
KIND = "AuthorizationPolicy"


@pytest.fixture(autouse=True)
def _toy_dialect(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(base._DIALECT_MODULES, GROUP, ("istio", "enforcer.toy_dialect"))
    toy_dialect.BATCHES.clear()


class _Api:
    """Discovery of one group, its objects at every served version, and watches that stay open without events.

    Each discovery takes the next entry of :attr:`plan` (the versions served; none: the group is not installed)
    and the last entry stays."""

    def __init__(self, objects: Sequence[dict[str, Any]], *plan: list[str]) -> None:
        self.plan = list(plan)
        self.objects = list(objects)
        self.failing = False
        self.discoveries = 0
        self.listed: list[str] = []

    async def list_collection(self, path: str) -> dict[str, Any]:
        if self.failing:
            raise KubernetesUnavailableError(f"list {path}", "connection refused")
        if path == f"/apis/{GROUP}":
            self.discoveries += 1
            versions = self.plan.pop(0) if len(self.plan) > 1 else self.plan[0]
            if not versions:
                raise KubernetesUnavailableError(f"list {path}", "HTTP 404: Not Found")
            return {
                "preferredVersion": {"version": versions[0]},
                "versions": [{"version": v} for v in versions],
            }
        if path.startswith(f"/apis/{GROUP}/") and path.count("/") == 3:
            return {"resources": [{"kind": KIND, "name": "authorizationpolicies"}]}
        if path.startswith("/apis/security.istio.io/"):
            self.listed.append(path)
            return {"metadata": {"resourceVersion": "1"}, "items": self.objects}
        raise KubernetesUnavailableError(f"list {path}", "HTTP 404: Not Found")

    async def watch_collection(
        self, path: str, resource_version: str, *, timeout_seconds: int
    ) -> AsyncIterator[dict[str, Any]]:
        await asyncio.Event().wait()
        yield {}  # never reached: a watch that stays open without events


class _Feed:
    """Records each source's last documents, by policy name."""

    def __init__(self) -> None:
        self.sources: dict[str, list[str]] = {}

    async def set_source(
        self, source: str, documents: Sequence[tuple[Any, Any]], *, origins: Any = None
    ) -> None:
        self.sources[source] = sorted(doc["metadata"]["name"] for doc, _ in documents)


def _object(name: str) -> dict[str, Any]:
    document = toy(name, "shop", "DENY", "spiffe://partner.org/x")
    return {"metadata": document["metadata"], "spec": document["spec"]}


@asynccontextmanager
async def _watching(api: _Api, feed: _Feed) -> AsyncIterator[asyncio.Task[None]]:
    """The watch running over ``api`` and ``feed`` for the block; stopped (and waited for) after it."""
    watch = ForeignPolicyWatch(
        cast(KubeApi, api),
        cast(PolicyFeed, feed),
        translation=TranslateOptions(),
        kinds={GROUP: (KIND,)},
        retry_delay=0.01,
        discovery_interval=0.02,
    )
    task = asyncio.create_task(watch.run())
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _discoveries(api: _Api, count: int) -> None:
    start = api.discoveries
    await eventually(lambda: api.discoveries >= start + count, what=f"{count} more discoveries")


async def test_a_kind_installed_after_start_is_followed() -> None:
    """Nothing is served at start; once the group appears its objects reach the feed."""
    api, feed = _Api([_object("deny-partner")], [], [], ["v1"]), _Feed()
    async with _watching(api, feed):
        await _discoveries(api, 2)
        assert feed.sources == {}
        await eventually(
            lambda: feed.sources.get(f"kubernetes:{GROUP}") == ["istio-deny-partner"],
            what="the translated policy",
        )


async def test_a_kind_missing_once_stays_and_missing_twice_leaves() -> None:
    """One discovery without the group keeps its translations (an API server just started); two in a row
    empty the source."""
    served = ["v1"]
    api, feed = _Api([_object("deny-partner")], served, [], served, served, served), _Feed()
    async with _watching(api, feed):
        await _discoveries(api, 5)
        assert api.listed == [f"/apis/{GROUP}/v1/authorizationpolicies"]  # followed all along
        assert feed.sources[f"kubernetes:{GROUP}"] == ["istio-deny-partner"]
        api.plan = [[]]
        await eventually(
            lambda: feed.sources[f"kubernetes:{GROUP}"] == [], what="the source emptied"
        )


async def test_a_failing_discovery_changes_nothing() -> None:
    """While discovery fails, what is followed stays followed and published."""
    api, feed = _Api([_object("deny-partner")], ["v1"]), _Feed()
    async with _watching(api, feed) as task:
        await eventually(
            lambda: f"kubernetes:{GROUP}" in feed.sources, what="the first publication"
        )
        api.failing = True
        await asyncio.sleep(0.2)
        assert feed.sources[f"kubernetes:{GROUP}"] == ["istio-deny-partner"]
        assert not task.done()


async def test_a_new_preferred_version_is_followed_at_its_path() -> None:
    """When the group prefers another version, the kind is listed again there and stays published."""
    api, feed = _Api([_object("deny-partner")], ["v1beta1"]), _Feed()
    async with _watching(api, feed):
        await eventually(
            lambda: f"kubernetes:{GROUP}" in feed.sources, what="the first publication"
        )
        api.plan = [["v1", "v1beta1"]]
        await eventually(
            lambda: f"/apis/{GROUP}/v1/authorizationpolicies" in api.listed, what="a list at v1"
        )
        assert feed.sources[f"kubernetes:{GROUP}"] == ["istio-deny-partner"]
