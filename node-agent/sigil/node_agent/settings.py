"""The agent's settings: one frozen object, built once in ``cli.py`` from the file, the environment and flags.

The shared configuration file holds ``trust_domain`` and ``data_dir`` at the top and the agent's keys under
``agent:``; a flag beats a ``SIGIL_*`` environment variable, which beats the file, which beats the default
(``sigil.ca.config.pick``). Every key is checked here, before anything listens, and an unknown key is refused by
name: a typo must stop the agent at start, not surface as an attestation failure later. The README lists them all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from sigil.ca.config import ConfigError, data_dir_from, load_config_file, pick
from sigil.ca.durations import parse_duration
from sigil.ca.errors import SigilError
from sigil.ca.spiffe_id import SpiffeId, TrustDomain
from sigil.kit.logs import parse_log_level
from sigil.node_agent.errors import AgentConfigError

__all__ = [
    "DEFAULT_SOCKET_PATH",
    "DEFAULT_TOKEN_PATH",
    "AgentSettings",
    "AttestationSettings",
    "RotationSettings",
    "health_listen_of",
    "load_agent_settings",
]

# The Workload API socket when none is configured; the endpoint's own default too. Defined here, with the other
# defaults, so that reading settings does not import the endpoint (grpclib) or tie the SVID cache to it.
DEFAULT_SOCKET_PATH = Path("/run/sigil/agent.sock")

#: Where a DaemonSet mounts the agent's projected ServiceAccount token (audience ``sigil-server``).
DEFAULT_TOKEN_PATH = Path("/var/run/secrets/tokens/sigil-agent")

_AGENT_KEYS = frozenset(
    {
        "socket_path",
        "data_dir",
        "issuer_url",
        "server_id",
        "trust_bundle_path",
        "insecure_bootstrap",
        "attestation",
        "node_name",
        "rotation",
        "discover_workload_path",
        "log_level",
        "health_listen",
        "event_loop",
    }
)
_ATTESTATION_KEYS = frozenset({"method", "token_path", "cluster", "join_token"})
_ROTATION_KEYS = frozenset(
    {
        "batch_window",
        "backoff_initial",
        "backoff_max",
        "idle_timeout",
        "denied_retry",
        "bundle_wait",
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class AttestationSettings:
    """How the agent proves itself to the issuer: a projected token file (``k8s``) or a join token."""

    method: Literal["k8s", "join_token"] = "join_token"
    token_path: Path = DEFAULT_TOKEN_PATH
    cluster: str = "default"
    join_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class RotationSettings:
    """Timing of issuance and rotation; the defaults follow SPIRE's agent (reference §4)."""

    #: Requests for new workloads arriving within this window go to the issuer in one batch.
    batch_window: timedelta = timedelta(milliseconds=20)
    #: Exponential backoff while the issuer is unreachable: the first wait, doubling up to the cap.
    backoff_initial: timedelta = timedelta(seconds=1)
    backoff_max: timedelta = timedelta(minutes=5)
    #: A workload nobody asked for since its last issuance, and for this long, is dropped instead of rotated.
    idle_timeout: timedelta = timedelta(minutes=5)
    #: How long a workload the issuer entitles to nothing is told so before the issuer is asked again.
    denied_retry: timedelta = timedelta(seconds=10)
    #: How long one bundle long poll may wait on the server for a change.
    bundle_wait: timedelta = timedelta(seconds=60)


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentSettings:
    """Everything ``sigil-agent run`` needs."""

    trust_domain: TrustDomain
    issuer_url: str
    #: The agent's own state: its SVID, key and last bundle (``<top-level data_dir>/agent`` by default).
    data_dir: Path
    socket_path: Path = DEFAULT_SOCKET_PATH
    server_id: SpiffeId | None = None
    trust_bundle_path: Path | None = None
    insecure_bootstrap: bool = False
    attestation: AttestationSettings = field(default_factory=AttestationSettings)
    #: With it, the agent follows this node's pods from the issuer and attests workloads with the ``k8s`` attestor.
    node_name: str | None = None
    rotation: RotationSettings = field(default_factory=RotationSettings)
    discover_workload_path: bool = False
    log_level: str = "info"
    #: ``HOST:PORT`` of the plain-HTTP ``/live`` and ``/ready`` endpoint for probes; none when unset.
    health_listen: str | None = None
    #: The event loop the agent runs on. ``uvloop`` (the ``sigil[uvloop]`` extra) takes a fifth to a third off
    #: the server's CPU time per Workload API connection and call, and keeps about 1.4 MB more resident (an idle
    #: agent: 66.1 MB instead of 64.8), so it is a choice rather than the default (bench/agent.py: ``uvloop_*``
    #: beside the default loop's figures).
    event_loop: Literal["asyncio", "uvloop"] = "asyncio"

    def __post_init__(self) -> None:
        if not self.issuer_url.startswith(("https://", "http://")):
            raise AgentConfigError("issuer_url", f"{self.issuer_url!r} is not an http(s) URL")
        if self.trust_bundle_path is None and not self.insecure_bootstrap:
            raise AgentConfigError(
                "trust_bundle_path",
                "the issuer's trust bundle is needed (or insecure_bootstrap: true, for development only)",
            )

    @property
    def endpoint(self) -> str:
        """The ``SPIFFE_ENDPOINT_SOCKET`` value a workload needs."""
        return f"unix://{self.socket_path}"


def _section(
    values: Mapping[str, Any], name: str, known: frozenset[str], source: str
) -> Mapping[str, Any]:
    section = values.get(name) or {}
    if not isinstance(section, Mapping):
        raise AgentConfigError(source, f"'{name}' must be a mapping")
    unknown = sorted(set(section) - known)
    if unknown:
        raise AgentConfigError(source, f"unknown key(s) under '{name}': {', '.join(unknown)}")
    return section


def _duration(value: Any, key: str, source: str) -> timedelta:
    try:
        return value if isinstance(value, timedelta) else parse_duration(value)
    except ValueError as err:
        raise AgentConfigError(source, f"rotation.{key}: {err}") from err


def _flag_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in {"1", "true", "yes", "on"}


def health_listen_of(config_file: Path | None, flag: str | None = None) -> str | None:
    """Where the agent's health endpoint listens (flag > ``SIGIL_AGENT_HEALTH_LISTEN`` > file), None when nowhere.

    Only this key is read: a probe needs no trust bundle or issuer to ask whether the agent is ready.
    """
    source = str(config_file) if config_file else "settings"
    try:
        values = load_config_file(config_file)
        agent = _section(values, "agent", _AGENT_KEYS, source)
    except ConfigError as err:
        raise AgentConfigError(err.source, err.reason) from err
    found = pick(flag, "SIGIL_AGENT_HEALTH_LISTEN", agent, "health_listen")
    return str(found) if found else None


def _read_join_token(path: Path) -> str:
    """The token in ``path`` (surrounding whitespace dropped); the error names the file, never its content."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as err:
        raise AgentConfigError(str(path), f"cannot read the join token ({err.strerror})") from err
    except UnicodeDecodeError as err:
        raise AgentConfigError(str(path), "the join token file is not text") from err
    if not token:
        raise AgentConfigError(str(path), "the join token file is empty")
    return token


def load_agent_settings(
    config_file: Path | None,
    *,
    data_dir: str | None = None,
    trust_domain: str | None = None,
    socket_path: str | None = None,
    issuer_url: str | None = None,
    trust_bundle_path: str | None = None,
    insecure_bootstrap: bool | None = None,
    join_token: str | None = None,
    join_token_file: Path | None = None,
    node_name: str | None = None,
) -> AgentSettings:
    """Layer flags over ``SIGIL_*`` environment variables over the file over the embedded defaults.

    ``join_token_file`` (``--join-token-file``) is read here and beats ``join_token``, ``SIGIL_JOIN_TOKEN`` and the
    file's ``attestation.join_token``; there is no flag for the token itself, which ``ps`` would show to everyone.
    """
    source = str(config_file) if config_file else "settings"
    try:
        values = load_config_file(config_file)
        if isinstance(values.get("agent"), Mapping) and "kubernetes" in values["agent"]:
            raise AgentConfigError(
                source,
                "agent.kubernetes is gone: the agent gets its node's pods from the issuer, not the API server",
            )
        agent = _section(values, "agent", _AGENT_KEYS, source)
        attest = _section(agent, "attestation", _ATTESTATION_KEYS, source)
        timing = _section(agent, "rotation", _ROTATION_KEYS, source)
        top_dir = data_dir_from(data_dir, values)
        td_name = pick(trust_domain, "SIGIL_TRUST_DOMAIN", values, "trust_domain", "example.org")
        td = TrustDomain.parse(str(td_name))
        own_dir = agent.get("data_dir")
        agent_dir = Path(own_dir) if own_dir and data_dir is None else top_dir / "agent"
        server_id = agent.get("server_id")
        bundle_path = pick(trust_bundle_path, "SIGIL_TRUST_BUNDLE", agent, "trust_bundle_path")
        method = str(attest.get("method", "join_token"))
        if method not in {"k8s", "join_token"}:
            raise AgentConfigError(
                source, f"attestation.method {method!r} is not k8s or join_token"
            )
        attestation = AttestationSettings(
            method="k8s" if method == "k8s" else "join_token",
            token_path=Path(
                pick(None, "SIGIL_AGENT_TOKEN_PATH", attest, "token_path", str(DEFAULT_TOKEN_PATH))
            ),
            cluster=str(pick(None, "SIGIL_CLUSTER", attest, "cluster", "default")),
            join_token=(
                _read_join_token(join_token_file)
                if join_token_file is not None
                else pick(join_token, "SIGIL_JOIN_TOKEN", attest, "join_token")
            ),
        )
        defaults = RotationSettings()
        rotation = RotationSettings(
            **{
                key: _duration(timing.get(key, getattr(defaults, key)), key, source)
                for key in sorted(_ROTATION_KEYS)
            }
        )
        return AgentSettings(
            trust_domain=td,
            issuer_url=str(
                pick(issuer_url, "SIGIL_ISSUER_URL", agent, "issuer_url", "https://127.0.0.1:8081")
            ),
            data_dir=agent_dir,
            socket_path=Path(
                pick(
                    socket_path,
                    "SIGIL_AGENT_SOCKET",
                    agent,
                    "socket_path",
                    str(DEFAULT_SOCKET_PATH),
                )
            ),
            server_id=SpiffeId.parse(str(server_id)) if server_id else None,
            trust_bundle_path=Path(bundle_path) if bundle_path else None,
            insecure_bootstrap=_flag_bool(
                pick(
                    insecure_bootstrap,
                    "SIGIL_INSECURE_BOOTSTRAP",
                    agent,
                    "insecure_bootstrap",
                    False,
                )
            ),
            attestation=attestation,
            node_name=pick(node_name, "SIGIL_NODE_NAME", agent, "node_name"),
            rotation=rotation,
            discover_workload_path=_flag_bool(agent.get("discover_workload_path", False)),
            log_level=parse_log_level(pick(None, "SIGIL_LOG_LEVEL", agent, "log_level", "info")),
            health_listen=pick(None, "SIGIL_AGENT_HEALTH_LISTEN", agent, "health_listen"),
            event_loop=_event_loop(
                pick(None, "SIGIL_AGENT_EVENT_LOOP", agent, "event_loop", "asyncio"), source
            ),
        )
    except AgentConfigError:
        raise
    except ConfigError as err:
        raise AgentConfigError(err.source, err.reason) from err
    except (SigilError, ValueError, TypeError) as err:
        raise AgentConfigError(source, str(err)) from err


def _event_loop(value: object, source: str) -> Literal["asyncio", "uvloop"]:
    if value == "asyncio":
        return "asyncio"
    if value == "uvloop":
        return "uvloop"
    raise AgentConfigError(source, f"event_loop {value!r} is not asyncio or uvloop")
