"""``sigil-enforcer ext-authz`` as an operator runs it: its flags, and a process that denies until policies load."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from enforcer.policy_docs import ap, dump, rule, spiffe
from enforcer.policy_world import PodAttestor, policy_world
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest, CheckResponse
from google.protobuf import json_format  # type: ignore[import-untyped]
from grpclib.client import Channel, UnaryUnaryMethod
from sigil_testing.envoy_authz import running_ext_authz
from sigil_testing.network import free_port

from sigil.enforcer.cli import build_parser, main
from sigil.enforcer.extauthz.service import CHECK_PATH
from sigil.enforcer.extauthz.settings import ExtAuthzSettings
from sigil.enforcer.flags import Environment
from sigil.enforcer.policy.defaults import DefaultPolicy


def test_the_trust_domain_is_required(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --trust-domain or SIGIL_TRUST_DOMAIN the command refuses to start, naming the flag (exit 2)."""
    monkeypatch.delenv("SIGIL_TRUST_DOMAIN", raising=False)
    code = main(
        [
            "ext-authz",
            "--listen",
            "unix:///tmp/x.sock",
            "--policies",
            str(tmp_path),
            "--namespace",
            "shop",
        ]
    )
    assert code == 2
    assert "--trust-domain" in capsys.readouterr().err


def test_a_relative_unix_socket_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """``--listen unix://relative`` is a usage error that says what form is expected."""
    with pytest.raises(SystemExit) as exit_info:
        main(["ext-authz", "--listen", "unix://x.sock", "--policies", "p", "--namespace", "shop"])
    assert exit_info.value.code == 2
    assert "unix:///absolute/path" in capsys.readouterr().err


def _request(principal: str) -> CheckRequest:
    attributes = {
        "source": {"principal": principal},
        "destination": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": 8443}}
        },
    }
    request: CheckRequest = json_format.ParseDict({"attributes": attributes}, CheckRequest())
    return request


async def test_calls_are_denied_until_the_policy_directory_can_be_read(
    short_tmp: Path, tmp_path: Path
) -> None:
    """Started on a directory that does not exist yet, the server denies every call with ``no_policy``;
    once the directory appears, the policies decide, and /metrics counts both."""
    policies = tmp_path / "policies"
    metrics_port = free_port()
    arguments = [
        "--policies", str(policies),
        "--namespace", "shop",
        "--trust-domain", "example.org",
        "--watch-interval", "0.1",
        "--metrics", f"127.0.0.1:{metrics_port}",
    ]  # fmt: skip
    socket = short_tmp / "authz.sock"
    async with running_ext_authz(socket, short_tmp / "authz.log", arguments) as server:
        channel = Channel(path=str(socket))
        check = UnaryUnaryMethod(channel, CHECK_PATH, CheckRequest, CheckResponse)
        try:
            before: CheckResponse = await check(_request("spiffe://example.org/web"))
            policies.mkdir()
            (policies / "p.yaml").write_text(
                dump(ap("web", rules=[rule([spiffe("spiffe://example.org/web")])]))
            )
            after: CheckResponse = await check(_request("spiffe://example.org/web"))
            for _ in range(100):
                if after.status.code == 0:
                    break
                await asyncio.sleep(0.1)
                after = await check(_request("spiffe://example.org/web"))
        finally:
            channel.close()
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{metrics_port}/metrics") as response,
        ):
            exposition = await response.text()
        events = server.events()
    assert before.status.code == 7
    assert "no_policy" in before.status.message
    assert after.status.code == 0
    assert 'sigil_enforcer_peer_refusals_total{reason="no_policy"}' in exposition
    assert 'sigil_enforcer_decisions_total{decision="allowed",tier="namespace"} 1.0' in exposition
    assert any(e.get("refusal") == "no_policy" for e in events)


async def test_policies_from_the_agent_decide_once_the_first_snapshot_arrives(
    short_tmp: Path,
) -> None:
    """Fed by a real agent (and issuer), the server allows the peer the issuer's policy names and denies another,
    as decisions of the namespace tier."""
    allow_web = dump(
        ap("db-from-web", match={"app": "db"}, rules=[rule([spiffe("spiffe://example.org/web")])])
    )
    async with (
        policy_world({"shop.yaml": allow_web}) as world,
        world.agent(PodAttestor("shop", {"app": "db"})),
    ):
        arguments = [
            "--policies-from-agent", world.endpoint,
            "--namespace", "shop",
            "--labels", "app=db",
            "--trust-domain", "example.org",
        ]  # fmt: skip
        socket = short_tmp / "authz.sock"
        async with running_ext_authz(socket, short_tmp / "authz.log", arguments):
            channel = Channel(path=str(socket))
            check = UnaryUnaryMethod(channel, CHECK_PATH, CheckRequest, CheckResponse)
            try:
                web: CheckResponse = await check(_request("spiffe://example.org/web"))
                for _ in range(100):  # until the first snapshot is in force
                    if "no_policy" not in web.status.message:
                        break
                    await asyncio.sleep(0.1)
                    web = await check(_request("spiffe://example.org/web"))
                api: CheckResponse = await check(_request("spiffe://example.org/api"))
            finally:
                channel.close()
    assert web.status.code == 0
    assert api.status.code == 7
    assert "namespace tier" in api.status.message


async def test_the_server_listens_on_loopback_tcp_too(short_tmp: Path, tmp_path: Path) -> None:
    """``--listen 127.0.0.1:PORT`` serves Check over TCP, and SIGTERM stops the process cleanly."""
    policies = tmp_path / "policies"
    policies.mkdir()
    port = free_port()
    arguments = [
        "--policies",
        str(policies),
        "--namespace",
        "shop",
        "--trust-domain",
        "example.org",
    ]
    async with running_ext_authz(
        short_tmp / "unused.sock", short_tmp / "authz.log", arguments, listen=f"127.0.0.1:{port}"
    ) as server:
        channel = Channel("127.0.0.1", port)
        check = UnaryUnaryMethod(channel, CHECK_PATH, CheckRequest, CheckResponse)
        try:
            answer: CheckResponse = await check(_request("spiffe://example.org/web"))
            for _ in range(100):  # until the empty directory has been read once
                if answer.status.code == 0:
                    break
                await asyncio.sleep(0.1)
                answer = await check(_request("spiffe://example.org/web"))
        finally:
            channel.close()
    assert answer.status.code == 0
    assert "default tier" in answer.status.message
    assert server.events()[-1]["event"] == "ext_authz closed"


@pytest.mark.parametrize(
    "default", ["allow", "deny", "authenticated", "local-authenticated", "audit"]
)
def test_ext_authz_takes_every_default_the_proxy_takes(tmp_path: Path, default: str) -> None:
    """``--default`` and ``--workload-id-template`` read as for ``proxy`` and ``check``: one policy set means the
    same at Envoy as at the proxy."""
    args = build_parser().parse_args(
        [
            "ext-authz",
            "--listen",
            "unix:///tmp/x.sock",
            "--policies",
            str(tmp_path),
            "--namespace",
            "shop",
            "--trust-domain",
            "example.org",
            "--default",
            default,
            "--workload-id-template",
            "ns/{namespace}/sa/{service_account}",
        ]
    )
    settings = ExtAuthzSettings.from_args(args, Environment())
    assert settings.default is DefaultPolicy(default)
