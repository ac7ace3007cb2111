"""Agent settings: a flag beats the environment, which beats the file, which beats the default."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from sigil.ca.spiffe_id import SpiffeId, TrustDomain
from sigil.node_agent.errors import AgentConfigError
from sigil.node_agent.settings import DEFAULT_TOKEN_PATH, load_agent_settings
from sigil.node_agent.workload_api.endpoint import DEFAULT_SOCKET_PATH

_ENV = (
    "SIGIL_DATA_DIR",
    "SIGIL_TRUST_DOMAIN",
    "SIGIL_AGENT_SOCKET",
    "SIGIL_ISSUER_URL",
    "SIGIL_TRUST_BUNDLE",
    "SIGIL_INSECURE_BOOTSTRAP",
    "SIGIL_JOIN_TOKEN",
    "SIGIL_AGENT_TOKEN_PATH",
    "SIGIL_CLUSTER",
    "SIGIL_NODE_NAME",
    "SIGIL_LOG_LEVEL",
    "SIGIL_AGENT_EVENT_LOOP",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)


def _write(tmp_path: Path, document: object) -> Path:
    path = tmp_path / "sigil.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def test_the_embedded_defaults_need_only_a_way_to_trust_the_issuer() -> None:
    """Without a file: example.org, the standard socket, ./.sigil/agent, join-token attestation."""
    settings = load_agent_settings(None, insecure_bootstrap=True)
    assert settings.trust_domain == TrustDomain("example.org")
    assert settings.socket_path == DEFAULT_SOCKET_PATH
    assert settings.data_dir == Path(".sigil/agent")
    assert settings.attestation.method == "join_token"
    assert settings.rotation.batch_window == timedelta(milliseconds=20)
    assert settings.endpoint == f"unix://{DEFAULT_SOCKET_PATH}"


def test_without_a_trust_bundle_or_insecure_bootstrap_the_agent_refuses_to_start() -> None:
    """Trusting the issuer is never implicit."""
    with pytest.raises(AgentConfigError, match="trust_bundle_path"):
        load_agent_settings(None)


def test_the_file_sets_every_section(tmp_path: Path) -> None:
    """Top-level keys, the agent section, attestation and rotation are all read from the file."""
    config = _write(
        tmp_path,
        {
            "trust_domain": "prod.test",
            "data_dir": str(tmp_path / "state"),
            "agent": {
                "socket_path": "/tmp/s/agent.sock",
                "issuer_url": "https://issuer:8443",
                "server_id": "spiffe://prod.test/sigil/server",
                "trust_bundle_path": "/etc/sigil/bundle.pem",
                "attestation": {"method": "k8s", "cluster": "east", "token_path": "/t/token"},
                "node_name": "node-1",
                "rotation": {"backoff_max": "2m", "batch_window": "50ms"},
            },
        },
    )
    settings = load_agent_settings(config)
    assert settings.trust_domain == TrustDomain("prod.test")
    assert settings.data_dir == tmp_path / "state" / "agent"
    assert settings.socket_path == Path("/tmp/s/agent.sock")
    assert settings.server_id == SpiffeId.parse("spiffe://prod.test/sigil/server")
    assert settings.trust_bundle_path == Path("/etc/sigil/bundle.pem")
    assert (settings.attestation.method, settings.attestation.cluster) == ("k8s", "east")
    assert settings.attestation.token_path == Path("/t/token")
    assert settings.node_name == "node-1"
    assert settings.rotation.backoff_max == timedelta(minutes=2)
    assert settings.rotation.batch_window == timedelta(milliseconds=50)
    assert settings.attestation.token_path != DEFAULT_TOKEN_PATH


def test_environment_beats_the_file_and_flags_beat_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each layer overrides the one below it, key by key."""
    config = _write(
        tmp_path,
        {
            "agent": {
                "socket_path": "/from/file.sock",
                "issuer_url": "https://file:1",
                "insecure_bootstrap": True,
                "attestation": {"join_token": "from-file"},
            }
        },
    )
    monkeypatch.setenv("SIGIL_AGENT_SOCKET", "/from/env.sock")
    monkeypatch.setenv("SIGIL_ISSUER_URL", "https://env:2")
    monkeypatch.setenv("SIGIL_JOIN_TOKEN", "from-env")
    settings = load_agent_settings(config, issuer_url="https://flag:3")
    assert settings.socket_path == Path("/from/env.sock")
    assert settings.issuer_url == "https://flag:3"
    assert settings.attestation.join_token == "from-env"
    flagged = load_agent_settings(config, socket_path="/from/flag.sock", join_token="from-flag")
    assert flagged.socket_path == Path("/from/flag.sock")
    assert flagged.attestation.join_token == "from-flag"


def test_the_join_token_is_not_in_the_settings_repr() -> None:
    """A secret must not reach a log line through a printed settings object."""
    settings = load_agent_settings(None, insecure_bootstrap=True, join_token="s3cr3t-token")
    assert "s3cr3t-token" not in repr(settings)


@pytest.mark.parametrize(
    ("document", "needle"),
    [
        ({"agent": {"sokcet_path": "/x"}}, "sokcet_path"),
        ({"agent": {"attestation": {"method": "tpm"}}}, "tpm"),
        ({"agent": {"rotation": {"backoff_max": "soon"}}}, "backoff_max"),
        ({"agent": {"issuer_url": "ftp://x"}}, "issuer_url"),
        ({"trust_domain": "Not A Domain"}, "sigil.yaml"),
        ({"agent": ["not", "a", "mapping"]}, "'agent' must be a mapping"),
        ({"agent": {"log_level": "verbose"}}, "log_level 'verbose' is not one of debug, info"),
        ({"agent": {"event_loop": "trio"}}, "event_loop 'trio' is not asyncio or uvloop"),
    ],
)
def test_a_bad_setting_is_refused_by_name(tmp_path: Path, document: object, needle: str) -> None:
    """Typos, unknown methods, bad durations and URLs stop the agent at start with the key's name."""
    config = _write(tmp_path, document)
    with pytest.raises(AgentConfigError, match=needle):
        load_agent_settings(config, insecure_bootstrap=True)


def test_the_event_loop_is_asyncio_unless_the_file_or_environment_picks_uvloop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``agent.event_loop`` defaults to asyncio; the file may pick uvloop, and SIGIL_AGENT_EVENT_LOOP beats it."""
    assert load_agent_settings(None, insecure_bootstrap=True).event_loop == "asyncio"
    config = _write(tmp_path, {"agent": {"event_loop": "uvloop"}})
    assert load_agent_settings(config, insecure_bootstrap=True).event_loop == "uvloop"
    monkeypatch.setenv("SIGIL_AGENT_EVENT_LOOP", "asyncio")
    assert load_agent_settings(config, insecure_bootstrap=True).event_loop == "asyncio"


def test_the_old_api_server_settings_are_refused_with_the_reason(tmp_path: Path) -> None:
    """``agent.kubernetes`` (the agent's own pod watch) is gone; a file still holding it is told why."""
    config = _write(
        tmp_path,
        {"agent": {"insecure_bootstrap": True, "kubernetes": {"api_url": "https://k8s:6443"}}},
    )
    with pytest.raises(AgentConfigError, match="pods from the issuer"):
        load_agent_settings(config)


def test_the_join_token_comes_from_a_file_that_beats_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--join-token-file`` is read (whitespace dropped) and beats SIGIL_JOIN_TOKEN; an empty or missing file is
    refused by name, never by content."""
    monkeypatch.setenv("SIGIL_JOIN_TOKEN", "from-env")
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    settings = load_agent_settings(None, insecure_bootstrap=True, join_token_file=token_file)
    assert settings.attestation.join_token == "from-file"
    assert load_agent_settings(None, insecure_bootstrap=True).attestation.join_token == "from-env"
    token_file.write_text("  \n")
    with pytest.raises(AgentConfigError, match="empty"):
        load_agent_settings(None, insecure_bootstrap=True, join_token_file=token_file)
    with pytest.raises(AgentConfigError, match="cannot read the join token"):
        load_agent_settings(None, insecure_bootstrap=True, join_token_file=tmp_path / "none")
