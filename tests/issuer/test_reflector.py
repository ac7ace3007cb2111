"""The issuer's one list+watch loop, on scripted lists and watch streams."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

from sigil.issuer.errors import KubernetesUnavailableError
from sigil.issuer.kube.reflector import Reflector
from sigil.kit import Backoff


def _obj(name: str, version: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "resourceVersion": version}}


class _Script:
    """Lists and watch streams handed out in order; records what the reflector asked for and heard."""

    def __init__(self, lists: list[Any], watches: list[list[Any]]) -> None:
        self._lists = lists
        self._watches = watches
        self.watched_from: list[str] = []
        self.heard: list[tuple[str, Any]] = []
        self.done = asyncio.Event()

    async def list_(self) -> Mapping[str, Any]:
        item = self._lists.pop(0)
        if isinstance(item, Exception):
            raise item
        return dict(item)

    async def watch(self, version: str) -> AsyncIterator[Mapping[str, Any]]:
        self.watched_from.append(version)
        if not self._watches:
            self.done.set()
            await asyncio.Event().wait()
        for event in self._watches.pop(0):
            if isinstance(event, Exception):
                raise event
            yield event

    def reflector(self) -> Reflector:
        async def on_list(items: list[dict[str, Any]]) -> None:
            self.heard.append(("list", [i["metadata"]["name"] for i in items]))

        async def on_event(kind: str, obj: dict[str, Any]) -> None:
            self.heard.append((kind, obj["metadata"]["name"]))

        async def on_expired(detail: str) -> None:
            self.heard.append(("expired", detail))

        async def no_wait(seconds: float) -> None:
            pass

        return Reflector(
            operation="watch things",
            list_=self.list_,
            watch=self.watch,
            on_list=on_list,
            on_event=on_event,
            on_expired=on_expired,
            backoff=Backoff(first=0.01, longest=0.02, sleep=no_wait),
            unavailable_event="things.unavailable",
        )


async def _run_until_idle(script: _Script) -> Reflector:
    reflector = script.reflector()
    task = asyncio.create_task(reflector.run())
    async with asyncio.timeout(5):
        await script.done.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return reflector


async def test_it_lists_then_watches_from_the_list_and_resumes_from_the_last_version() -> None:
    """After a list the watch starts at its version; when a watch ends the next resumes at the last seen."""
    script = _Script(
        [{"metadata": {"resourceVersion": "10"}, "items": [_obj("a", "9")]}],
        [
            [{"type": "ADDED", "object": _obj("b", "11")}],
            [{"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "15"}}}],
        ],
    )
    reflector = await _run_until_idle(script)
    assert script.watched_from == ["10", "11", "15"]
    assert script.heard == [("list", ["a"]), ("ADDED", "b")]
    assert reflector.resource_version == "15"


async def test_an_expired_version_is_announced_and_listed_again() -> None:
    """A 410 ERROR event tells the owner and the next round lists afresh."""
    script = _Script(
        [
            {"metadata": {"resourceVersion": "10"}, "items": []},
            {"metadata": {"resourceVersion": "20"}, "items": [_obj("a", "19")]},
        ],
        [[{"type": "ERROR", "object": {"code": 410, "message": "too old"}}]],
    )
    await _run_until_idle(script)
    assert script.heard == [("list", []), ("expired", "too old"), ("list", ["a"])]
    assert script.watched_from == ["10", "20"]


async def test_an_unavailable_api_server_is_retried_and_what_was_seen_is_kept() -> None:
    """A failed list or watch is retried after a backoff; nothing is dropped meanwhile."""
    away = KubernetesUnavailableError("list things", "connection refused")
    script = _Script(
        [away, {"metadata": {"resourceVersion": "10"}, "items": [_obj("a", "9")]}],
        [[KubernetesUnavailableError("watch things", "reset")]],
    )
    reflector = await _run_until_idle(script)
    assert script.heard == [("list", ["a"])]
    assert script.watched_from == ["10", "10"]
    assert reflector.resource_version == "10"


async def test_any_other_error_event_is_an_outage_not_a_relist() -> None:
    """An ERROR event other than 410 counts as the API server being unavailable: the watch resumes."""
    script = _Script(
        [{"metadata": {"resourceVersion": "10"}, "items": []}],
        [[{"type": "ERROR", "object": {"code": 500, "message": "boom"}}]],
    )
    await _run_until_idle(script)
    assert script.heard == [("list", [])]
    assert script.watched_from == ["10", "10"]
