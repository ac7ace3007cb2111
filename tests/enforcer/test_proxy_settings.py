"""``proxy`` flags and the environment, checked and typed once into a frozen :class:`ProxySettings`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from sigil.ca.spiffe_id import SpiffeId, TrustDomain
from sigil.enforcer.cli import build_parser
from sigil.enforcer.errors import RequestError
from sigil.enforcer.flags import Environment, parse_pairs
from sigil.enforcer.policy import Target
from sigil.enforcer.policy.defaults import DefaultPolicy
from sigil.enforcer.proxy import Address, Inbound, Outbound, ProxySettings

SOCKET = "unix:///run/spire/agent.sock"
INBOUND = ["proxy", "inbound", "--listen", "127.0.0.1:9443", "--forward", "8080"]


def _settings(*argv: str, environment: Environment | None = None) -> ProxySettings:
    args = build_parser().parse_args(list(argv))
    return ProxySettings.from_args(args, environment or Environment())


def test_inbound_flags_become_typed_values() -> None:
    """Addresses, the pod, its namespace's labels and the trust domain arrive parsed, not as strings."""
    settings = _settings(
        *INBOUND,
        "--workload-api",
        SOCKET,
        "--policies",
        "/etc/policies",
        "--namespace",
        "shop",
        "--labels",
        "app=db,tier=data",
        "--namespace-labels",
        "team=a",
        "--trust-domain",
        "example.org",
        "--default",
        "deny",
    )
    assert settings.listen == Address("127.0.0.1", 9443)
    assert settings.workload_api == SOCKET
    inbound = settings.direction
    assert isinstance(inbound, Inbound)
    assert inbound.forward == Address("127.0.0.1", 8080)
    assert inbound.target == Target("shop", {"app": "db", "tier": "data"})
    assert dict(inbound.namespace_labels) == {"team": "a"}
    assert inbound.policies == Path("/etc/policies")
    assert inbound.trust_domain == TrustDomain("example.org")
    assert inbound.default is DefaultPolicy.DENY


def test_settings_are_frozen() -> None:
    """Nothing downstream can change a setting once the process has built them."""
    settings = _settings(*INBOUND, "--svid-dir", "/s", "--policies", "/p", "--namespace", "shop")
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.drain_seconds = 0.0  # type: ignore[misc]


def test_the_environment_fills_flags_left_out_and_a_flag_beats_it() -> None:
    """SPIFFE_ENDPOINT_SOCKET and SIGIL_TRUST_DOMAIN count only where the flag is absent."""
    environment = Environment(endpoint_socket=SOCKET, trust_domain="env.example")
    from_env = _settings(*INBOUND, "--policies", "/p", "--namespace", "n", environment=environment)
    assert from_env.workload_api == SOCKET
    assert isinstance(from_env.direction, Inbound)
    assert from_env.direction.trust_domain == TrustDomain("env.example")
    flagged = _settings(
        *INBOUND,
        "--policies",
        "/p",
        "--namespace",
        "n",
        "--workload-api",
        "unix:///other.sock",
        "--trust-domain",
        "flag.example",
        environment=environment,
    )
    assert flagged.workload_api == "unix:///other.sock"
    assert isinstance(flagged.direction, Inbound)
    assert flagged.direction.trust_domain == TrustDomain("flag.example")


def test_a_bare_policies_from_agent_means_the_workload_api_agent() -> None:
    """``--policies-from-agent`` without a socket streams from the agent serving the Workload API."""
    settings = _settings(
        *INBOUND, "--workload-api", SOCKET, "--policies-from-agent", "--namespace", "shop"
    )
    assert isinstance(settings.direction, Inbound)
    assert settings.direction.policies is None
    assert settings.direction.agent_endpoint == SOCKET


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["proxy", "inbound", "--listen", "1", "--svid-dir", "/s", "--policies", "/p"], "--forward"),
        ([*INBOUND, "--svid-dir", "/s", "--policies", "/p"], "--namespace"),
        ([*INBOUND, "--svid-dir", "/s", "--namespace", "n"], "--policies"),
        ([*INBOUND, "--policies", "/p", "--namespace", "n"], "--workload-api"),
        (["proxy", "outbound", "--listen", "1", "--svid-dir", "/s"], "--upstream"),
        ([*INBOUND, "--svid-dir", "/s", "--policies", "/p", "--namespace", "n", "--labels", "x"], "--labels"),
        (["proxy", "outbound", "--listen", "1", "--upstream", "2", "--svid-dir", "/s", "--federated", "x"], "--federated"),
        ([*INBOUND, "--svid-dir", "/s", "--policies", "/p", "--namespace", "n", "--probe-path", "healthz"], "--probe-path"),
        ([*INBOUND, "--svid-dir", "/s", "--policies", "/p", "--namespace", "n", "--probe-path", "/a b"], "--probe-path"),
    ],
)  # fmt: skip
def test_missing_or_malformed_flags_are_refused_by_name(argv: list[str], flag: str) -> None:
    """Each refusal names the flag the operator has to fix."""
    with pytest.raises(RequestError) as refused:
        _settings(*argv)
    assert refused.value.field == flag


def test_outbound_settings_carry_the_expected_server() -> None:
    """--expect-id becomes a SPIFFE ID; without it the expectation is left to the workload's own domain."""
    base = ["proxy", "outbound", "--listen", "1", "--upstream", "db:5432", "--svid-dir", "/s"]
    expecting = _settings(*base, "--expect-id", "spiffe://example.org/db")
    assert expecting.direction == Outbound(
        upstream=Address("db", 5432), expect=SpiffeId.parse("spiffe://example.org/db")
    )
    assert _settings(*base).direction == Outbound(upstream=Address("db", 5432))


def test_federated_bundles_are_read_with_svid_files() -> None:
    """``--federated TD=FILE`` maps each federated trust domain to its bundle file."""
    settings = _settings(
        "proxy", "outbound", "--listen", "1", "--upstream", "2", "--svid-dir", "/s",
        "--federated", "partner.example=/b/partner.pem",
    )  # fmt: skip
    assert dict(settings.federated) == {TrustDomain("partner.example"): Path("/b/partner.pem")}


def test_the_environment_treats_empty_variables_as_unset() -> None:
    """An exported but empty variable does not stand in for a flag."""
    environment = Environment.read({"SPIFFE_ENDPOINT_SOCKET": "", "SIGIL_TRUST_DOMAIN": "td"})
    assert environment == Environment(endpoint_socket=None, trust_domain="td")


def test_pairs_parse_and_refuse_items_without_a_key() -> None:
    """``k=v,...`` becomes a mapping; an item without ``key=`` is refused naming the option."""
    assert parse_pairs("--labels", " app=db, tier= ,") == {"app": "db", "tier": ""}
    with pytest.raises(RequestError, match="--labels"):
        parse_pairs("--labels", "=db")


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("8080", Address("127.0.0.1", 8080)),
        ("db.shop.svc:5432", Address("db.shop.svc", 5432)),
        ("[::1]:9443", Address("::1", 9443)),
        (":9102", Address("127.0.0.1", 9102)),
    ],
)
def test_addresses_parse_as_the_flags_spell_them(text: str, address: Address) -> None:
    """A bare port means localhost, brackets hold an IPv6 host, and the text form round-trips."""
    assert Address.parse(text) == address
    assert Address.parse(str(address)) == address


def test_a_port_out_of_range_is_not_an_address() -> None:
    """A port above 65535 is refused, which argparse reports as a usage error."""
    with pytest.raises(ValueError, match="not a TCP port"):
        Address.parse("127.0.0.1:70000")


def test_probe_paths_and_the_default_policy_are_typed() -> None:
    """Each --probe-path is kept exactly; --default names a DefaultPolicy."""
    settings = _settings(
        *INBOUND,
        "--svid-dir",
        "/s",
        "--policies",
        "/p",
        "--namespace",
        "n",
        "--probe-path",
        "/healthz",
        "--probe-path",
        "/ready",
        "--default",
        "local-authenticated",
    )
    inbound = settings.direction
    assert isinstance(inbound, Inbound)
    assert inbound.probe_paths == frozenset({"/healthz", "/ready"})
    assert inbound.default is DefaultPolicy.LOCAL_AUTHENTICATED


def test_istio_translation_flags_reach_the_inbound_settings() -> None:
    """``--root-namespace`` and each ``--trust-domain-alias`` (checked as a trust domain) are typed for the
    translation of Istio policy in the watched directory; a bad alias is refused by name."""
    base = [*INBOUND, "--svid-dir", "/s", "--policies", "/p", "--namespace", "n"]
    inbound = _settings(*base).direction
    assert isinstance(inbound, Inbound)
    assert (inbound.root_namespace, inbound.trust_domain_aliases) == ("istio-system", ())
    flags = ["--root-namespace", "mesh-root", "--trust-domain-alias", "old.example"]
    inbound = _settings(*base, *flags, "--trust-domain-alias", "older.example").direction
    assert isinstance(inbound, Inbound)
    assert inbound.root_namespace == "mesh-root"
    assert inbound.trust_domain_aliases == ("old.example", "older.example")
    with pytest.raises(RequestError, match="--trust-domain-alias"):
        _settings(*base, "--trust-domain-alias", "spiffe://old.example/x")
