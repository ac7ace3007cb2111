"""The test suite's own shared helpers (``sigil_testing.clock``, ``.paths``, ``.waiting``, ``.enrolment``,
``.network``, ``.envoy``) do what they promise."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sigil_testing.clock import FakeClock
from sigil_testing.enrolment import enrol_agent
from sigil_testing.envoy import EnvoyNotReadyError, run_envoy
from sigil_testing.issuer import issuer_settings, running_issuer
from sigil_testing.network import echo_server, free_port, free_ports
from sigil_testing.paths import new_short_directory, short_directory
from sigil_testing.waiting import WaitTimeoutError, entered, eventually, eventually_sync

from sigil.ca.spiffe_id import SpiffeId

START = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def test_the_fake_clock_stands_still_until_advanced() -> None:
    """Reading the clock twice gives the same time; advancing moves it by exactly the step."""
    clock = FakeClock(START)
    assert clock() == clock() == START
    assert clock.advance(timedelta(minutes=5)) == START + timedelta(minutes=5)
    assert clock() == START + timedelta(minutes=5)


def test_the_fake_clock_reads_as_seconds_too() -> None:
    """``seconds`` is the same instant as POSIX time, and advancing by a float moves both readings."""
    clock = FakeClock(1_800_000_000.0)
    assert clock.seconds() == 1_800_000_000.0
    assert clock() == datetime.fromtimestamp(1_800_000_000, UTC)
    clock.advance(61)
    assert clock.seconds() == 1_800_000_061.0


def test_the_fake_clock_starts_now_in_whole_seconds() -> None:
    """Without a start it reads the current time, truncated to the second as certificate dates are."""
    before = datetime.now(UTC).replace(microsecond=0)
    now = FakeClock()()
    assert now.microsecond == 0
    assert before <= now <= datetime.now(UTC)


def test_the_fake_clock_refuses_a_naive_start() -> None:
    """A naive datetime names no instant, so it is refused."""
    with pytest.raises(ValueError, match="aware"):
        FakeClock(datetime(2026, 11, 1))


def test_a_short_directory_fits_a_unix_socket_path_and_is_removed() -> None:
    """The directory is private and short enough for ``AF_UNIX``, and goes away with its contents."""
    with short_directory() as directory:
        (directory / "nested").mkdir()
        assert len(str(directory / "run" / "agent.sock")) < 60
        assert directory.stat().st_mode & 0o077 == 0
    assert not directory.exists()


def test_a_new_short_directory_is_left_to_the_caller() -> None:
    """``new_short_directory`` makes a fresh directory each call and leaves it in place."""
    first, second = new_short_directory(), new_short_directory()
    try:
        assert first != second
        assert first.is_dir()
        assert second.is_dir()
    finally:
        first.rmdir()
        second.rmdir()


async def test_eventually_returns_the_first_truthy_value() -> None:
    """It polls until the condition holds and hands back what the condition returned."""
    calls: list[int] = []

    def ready() -> int:
        calls.append(1)
        return len(calls) if len(calls) >= 3 else 0

    assert await eventually(ready, what="three calls", interval=0) == 3


async def test_eventually_awaits_an_async_condition() -> None:
    """An async condition is awaited, and its result decides."""
    event = asyncio.Event()
    asyncio.get_running_loop().call_soon(event.set)

    async def is_set() -> bool:
        return event.is_set()

    assert await eventually(is_set, what="the event")


async def test_eventually_fails_the_test_at_its_deadline_naming_what_it_waited_for() -> None:
    """A state that never comes fails with an ``AssertionError`` that says what was awaited."""
    with pytest.raises(AssertionError, match=r"not within 0\.05 s: the impossible") as failed:
        await eventually(lambda: False, what="the impossible", within=0.05)
    assert isinstance(failed.value, WaitTimeoutError)


def test_eventually_sync_polls_outside_an_event_loop() -> None:
    """The blocking twin returns the first truthy value, or fails at its deadline."""
    values = iter([0, 0, 7])
    assert eventually_sync(lambda: next(values), what="seven", interval=0) == 7
    with pytest.raises(WaitTimeoutError):
        eventually_sync(lambda: None, what="nothing", within=0.05, interval=0.01)


class _Feed:
    """A stand-in for anything with a coroutine method a test waits to be called."""

    def __init__(self) -> None:
        self.released = asyncio.Event()

    async def wait(self, answer: int) -> int:
        await self.released.wait()
        return answer


async def test_entered_signals_that_a_method_was_called_and_then_restores_it() -> None:
    """The event is set once the method runs, the call still returns its answer, and the wrapper goes away."""
    feed = _Feed()
    with entered(feed, "wait") as reached:
        assert not reached.is_set()
        call = asyncio.create_task(feed.wait(7))
        await asyncio.wait_for(reached.wait(), timeout=5)
        assert not call.done()
        feed.released.set()
        assert await call == 7
    assert "wait" not in vars(feed)


async def test_enrol_agent_makes_a_token_the_entries_and_the_bootstrap_bundle(
    short_tmp: Path,
) -> None:
    """The settings name the running issuer and its bundle, and each entry sits under the agent the token attests."""
    workload = SpiffeId.parse("spiffe://example.org/web")
    async with running_issuer(issuer_settings(short_tmp / "server")) as server:
        settings = await enrol_agent(server, short_tmp, {workload: ["unix:uid:1"]})
        (entry,) = await server.issuer.registry.entries()
        spent_as = await server.issuer.registry.spend_join_token(
            settings.attestation.join_token or "", now=server.issuer.ca.now()
        )
        assert settings.issuer_url == server.url
        assert settings.trust_bundle_path is not None
        assert settings.trust_bundle_path.read_bytes() == server.issuer.ca.bundle().to_pem()
    assert entry.spiffe_id == workload
    assert spent_as is not None
    assert str(entry.parent_id).endswith(f"/sigil/agent/join/{spent_as}")


def test_free_ports_are_distinct_and_bindable() -> None:
    """Ports chosen together differ, and each can be bound on loopback once chosen."""
    ports = free_ports(3)
    assert len(set(ports)) == 3
    for port in [*ports, free_port()]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


async def test_the_echo_server_answers_a_line_with_that_line() -> None:
    """A client's first line comes back, then the server hangs up."""
    async with echo_server() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"hello\n")
        await writer.drain()
        assert await reader.read() == b"hello\n"
        writer.close()
        await writer.wait_closed()


async def test_a_real_envoy_runs_on_the_given_bootstrap_and_its_log_explains_a_refusal(
    tmp_path: Path,
) -> None:
    """``run_envoy`` yields once Envoy is ready: a TCP proxy listener of the test's bootstrap carries a line to the
    echo server and the listener's statistics count the connection; a bootstrap Envoy refuses fails with its log."""
    listen_port = free_port()
    async with echo_server() as echo_port:
        bootstrap = {
            "node": {"id": "helper-test", "cluster": "helper-test"},
            "static_resources": {
                "listeners": [
                    {
                        "name": "front",
                        "address": {
                            "socket_address": {"address": "127.0.0.1", "port_value": listen_port}
                        },
                        "filter_chains": [
                            {
                                "filters": [
                                    {
                                        "name": "envoy.filters.network.tcp_proxy",
                                        "typed_config": {
                                            "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                                            "stat_prefix": "front",
                                            "cluster": "echo",
                                        },
                                    }
                                ]
                            }
                        ],
                    }
                ],
                "clusters": [
                    {
                        "name": "echo",
                        "type": "STATIC",
                        "load_assignment": {
                            "cluster_name": "echo",
                            "endpoints": [
                                {
                                    "lb_endpoints": [
                                        {
                                            "endpoint": {
                                                "address": {
                                                    "socket_address": {
                                                        "address": "127.0.0.1",
                                                        "port_value": echo_port,
                                                    }
                                                }
                                            }
                                        }
                                    ]
                                }
                            ],
                        },
                    }
                ],
            },
        }
        async with run_envoy(bootstrap, tmp_path) as envoy:
            reader, writer = await asyncio.open_connection("127.0.0.1", listen_port)
            writer.write(b"through envoy\n")
            await writer.drain()
            assert await reader.readline() == b"through envoy\n"
            writer.close()
            await writer.wait_closed()

            async def counted() -> int:
                stats = await envoy.stats(r"^tcp\.front\.downstream_cx_total$")
                return stats.get("tcp.front.downstream_cx_total", 0)

            assert await eventually(counted, what="the connection counted") == 1

    broken = {"node": {"id": "x", "cluster": "x"}, "static_resources": {"listeners": [{"name": 7}]}}
    with pytest.raises(EnvoyNotReadyError, match="envoy exited"):
        async with run_envoy(broken, tmp_path, name="broken"):
            pass
