"""``sigil-agent`` as an operator uses it: ``run`` in a real process, ``api fetch`` against a running agent."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import jwt
import pytest
import yaml
from sigil_testing.agent import WORKLOAD_ID, AgentWorld, agent_world
from sigil_testing.ca import openssl
from sigil_testing.network import free_port
from sigil_testing.waiting import eventually

from sigil.node_agent.agent import NodeAgent
from sigil.node_agent.cli import main


@pytest.fixture
async def world() -> AsyncIterator[AgentWorld]:
    async with agent_world() as running:
        yield running


@pytest.fixture
async def agent(world: AgentWorld) -> AsyncIterator[NodeAgent]:
    async with world.agent() as running:
        yield running


async def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    capsys.readouterr()  # the in-process agent logs to stdout; keep only what the command prints
    status = await asyncio.to_thread(main, list(argv))
    lines = capsys.readouterr().out.splitlines(keepends=True)
    # structlog's default logger also writes to stdout here; an operator's run has the agent elsewhere.
    return status, "".join(line for line in lines if not line[:4].isdigit())


def _listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


async def test_api_fetch_x509_writes_the_files_spire_agent_writes(
    agent: NodeAgent, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """svid.0.pem, svid.0.key (0600) and bundle.0.pem are written, and openssl verifies the chain."""
    status, out = await _cli(
        capsys,
        "api",
        "fetch",
        "x509",
        "--socket",
        str(agent.settings.socket_path),
        "--write",
        str(tmp_path),
    )
    assert status == 0
    assert str(WORKLOAD_ID) in out
    assert await asyncio.to_thread(_listing, tmp_path) == [
        "bundle.0.pem",
        "svid.0.key",
        "svid.0.pem",
    ]
    assert stat.S_IMODE((tmp_path / "svid.0.key").stat().st_mode) == 0o600
    verified = openssl(
        "verify", "-no_check_time", "-CAfile", "bundle.0.pem", "svid.0.pem", cwd=tmp_path
    )
    assert verified.returncode == 0, verified.stderr
    match = openssl("pkey", "-in", "svid.0.key", "-pubout", cwd=tmp_path)
    cert_key = openssl("x509", "-in", "svid.0.pem", "-pubkey", "-noout", cwd=tmp_path)
    assert match.stdout == cert_key.stdout


async def test_api_fetch_jwt_prints_a_token_for_the_audience(
    agent: NodeAgent, capsys: pytest.CaptureFixture[str]
) -> None:
    """The printed token names the caller's SPIFFE ID and the audience asked for."""
    status, out = await _cli(
        capsys, "api", "fetch", "jwt", "--audience", "db", "--socket", agent.endpoint
    )
    claims = jwt.decode(out.strip(), options={"verify_signature": False})
    assert status == 0
    assert (claims["sub"], claims["aud"]) == (str(WORKLOAD_ID), ["db"])


async def test_api_fetch_bundle_prints_pem_and_json(
    agent: NodeAgent, world: AgentWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    """The X.509 bundle comes out as PEM and the JWT bundle as a JWKS per trust domain."""
    status, pem = await _cli(capsys, "api", "fetch", "bundle", "--socket", agent.endpoint)
    assert status == 0
    ca = world.server.issuer.ca
    assert ca.bundle().to_pem().decode() in pem
    status, text = await _cli(
        capsys, "api", "fetch", "bundle", "--output", "json", "--socket", agent.endpoint
    )
    document = json.loads(text)
    assert status == 0
    assert {k["kid"] for k in document["example.org"]["keys"]} == set(ca.jwt_keys())


async def test_api_fetch_without_an_agent_fails_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No socket there: exit status 1 and an error on stderr, no traceback."""
    status = await asyncio.to_thread(
        main, ["api", "fetch", "--socket", str(tmp_path / "none.sock")]
    )
    assert status == 1
    assert "error:" in capsys.readouterr().err


async def test_run_prints_the_endpoint_and_drains_on_sigterm(world: AgentWorld) -> None:
    """`sigil-agent run` prints the socket and the env line, serves, freezes its start-up heap, exits 0 on SIGTERM."""
    config = world.directory / "sigil.yaml"
    socket_path = world.directory / "run.sock"
    config.write_text(
        yaml.safe_dump(
            {
                "trust_domain": "example.org",
                "data_dir": str(world.directory / "state"),
                "agent": {
                    "socket_path": str(socket_path),
                    "issuer_url": world.url,
                    "trust_bundle_path": str(world.bundle_path),
                    "attestation": {"method": "join_token", "join_token": world.join_token},
                    "log_level": "info",
                },
            }
        )
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sigil.node_agent.cli",
        "run",
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "SIGIL_DATA_DIR": ""},
    )
    try:
        assert process.stdout is not None
        first = await asyncio.wait_for(process.stdout.readline(), timeout=30)
        second = await asyncio.wait_for(process.stdout.readline(), timeout=5)
        assert first.decode().strip() == f"sigil-agent: Workload API on {socket_path}"
        assert second.decode().strip() == f"SPIFFE_ENDPOINT_SOCKET=unix://{socket_path}"
        assert socket_path.is_socket()
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=20) == 0
        assert not socket_path.exists()
        assert len(await world.attested_agents()) == 1
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        _, logs = await process.communicate()
    # Before it announced the socket, the agent froze its start-up heap out of the collector's full passes.
    assert b"heap.frozen" in logs


async def test_run_refuses_a_join_token_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``run --join-token VALUE`` (which ps shows to everyone) exits 2, naming the file and the variable to use."""
    status = await asyncio.to_thread(
        main, ["run", "--insecure-bootstrap", "--join-token", "s3cr3t-value"]
    )
    err = capsys.readouterr().err
    assert status == 2
    assert "--join-token-file" in err
    assert "SIGIL_JOIN_TOKEN" in err
    assert "s3cr3t-value" not in err


async def test_healthcheck_follows_a_real_agent_from_waiting_to_serving_to_gone(
    world: AgentWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    """``sigil-agent healthcheck`` exits 1 while the agent waits for the issuer, 0 once it serves, and 1 with a
    clear message when no agent answers any more."""
    await world.stop_issuer()
    config = world.directory / "sigil.yaml"
    listen = f"0.0.0.0:{free_port()}"
    config.write_text(
        yaml.safe_dump(
            {
                "trust_domain": "example.org",
                "data_dir": str(world.directory / "state"),
                "agent": {
                    "socket_path": str(world.directory / "hc.sock"),
                    "issuer_url": world.url,
                    "trust_bundle_path": str(world.bundle_path),
                    "attestation": {"method": "join_token", "join_token": world.join_token},
                    "health_listen": listen,
                    "log_level": "warning",
                    "rotation": {"backoff_initial": "50ms", "backoff_max": "200ms"},
                },
            }
        )
    )

    async def healthcheck() -> tuple[int, str, str]:
        capsys.readouterr()
        status = await asyncio.to_thread(main, ["healthcheck", "--config", str(config)])
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    async def answered() -> tuple[int, str, str] | None:
        """The healthcheck's verdict once the process's health endpoint answers at all."""
        verdict = await healthcheck()
        return None if "does not answer" in verdict[2] else verdict

    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sigil.node_agent.cli",
        "run",
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "SIGIL_DATA_DIR": ""},
    )
    try:
        status, _, err = await eventually(
            answered, what="the agent's health endpoint", within=30, interval=0.1
        )
        assert (status, err.strip()) == (
            1,
            "not ready: starting: not yet attested or not yet listening",
        )
        await world.start_issuer()
        assert process.stdout is not None
        await asyncio.wait_for(process.stdout.readline(), timeout=30)
        assert await healthcheck() == (0, "ready: serving\n", "")
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=20) == 0
        status, _, err = await healthcheck()
        assert status == 1
        assert f"the agent's health endpoint at {listen} does not answer" in err
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await process.communicate()


async def test_healthcheck_without_an_endpoint_says_where_to_set_one(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No health_listen anywhere: exit 2 and the message names the key, the variable and the flag."""
    monkeypatch.delenv("SIGIL_AGENT_HEALTH_LISTEN", raising=False)
    assert await asyncio.to_thread(main, ["healthcheck"]) == 2
    err = capsys.readouterr().err
    assert "agent.health_listen" in err
    assert "--health-listen" in err
