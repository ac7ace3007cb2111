"""``sigil-enforcer check``: answers, exit codes, JSON and explanations, as a user at a shell sees them."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from enforcer.policy_docs import ap, cap, dump, network_rule, rule, sa

from sigil.enforcer.cli import main

Write = Callable[[Mapping[str, str]], Path]
WEB = "spiffe://example.org/ns/shop/sa/web"


@pytest.fixture
def policies(write_policies: Write) -> Path:
    """A shop namespace whose db pods accept web on 5432, with a dry-run DENY for batch."""
    return write_policies(
        {
            "shop.yaml": dump(
                ap("db-from-web", match={"app": "db"}, rules=[rule([sa("web")], ports=[5432])]),
                ap("try-no-batch", action="DENY", rules=[rule([sa("batch")])], dry_run=True),
            ),
            "cluster.yaml": dump(
                cap(
                    "monitoring",
                    priority=1,
                    rules=[rule([sa("prometheus", "monitoring")], ports=[9090], action="Allow")],
                )
            ),
        }
    )


def _check(policies: Path, peer: str, *extra: str, port: str = "5432") -> list[str]:
    return [
        "check",
        "--policies",
        str(policies),
        "--peer",
        peer,
        "--namespace",
        "shop",
        "--labels",
        "app=db",
        "--port",
        port,
        *extra,
    ]


def test_allowed_prints_allowed_and_exits_0(
    policies: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An allowed connection prints ``allowed`` and exits 0."""
    assert main(_check(policies, WEB)) == 0
    assert capsys.readouterr().out == "allowed\n"


def test_denied_prints_denied_and_exits_1(
    policies: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A denied connection prints ``denied`` and exits 1."""
    assert main(_check(policies, WEB, port="6379")) == 1
    assert capsys.readouterr().out == "denied\n"


def test_peer_none_means_no_svid(policies: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--peer none`` is a peer without an SVID, which no identity source matches."""
    assert main(_check(policies, "none")) == 1
    assert capsys.readouterr().out == "denied\n"


def test_json_output_keys(policies: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """JSON output carries decision, tier, policy, rule and dry_run."""
    assert main(_check(policies, WEB, "--output", "json")) == 0
    data = json.loads(capsys.readouterr().out)
    assert {k: data[k] for k in ("decision", "tier", "policy", "rule")} == {
        "decision": "allowed",
        "tier": "namespace",
        "policy": "shop/db-from-web",
        "rule": 0,
    }
    assert data["dry_run"]["decision"] == "allowed"
    assert data["dry_run"]["matches"] == []


def test_json_reports_dry_run_match(policies: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A matching dry-run policy is reported in ``dry_run`` while the decision stands."""
    peer = "spiffe://example.org/ns/shop/sa/batch"
    assert main(_check(policies, peer, "--output", "json")) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["decision"] == "denied"
    assert data["dry_run"]["policy"] == "shop/try-no-batch"
    assert [m["policy"] for m in data["dry_run"]["matches"]] == ["shop/try-no-batch"]


def test_explain_names_tier_policy_rule_and_other_matches(
    policies: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--explain`` says which tier, policy and rule decided and what else matched."""
    peer = "spiffe://example.org/ns/monitoring/sa/prometheus"
    assert main(_check(policies, peer, "--explain", "--port", "9090")) == 0
    out = capsys.readouterr().out
    assert out.startswith("allowed\n")
    assert "tier:   admin" in out
    assert "policy: monitoring" in out
    assert "matched: admin monitoring rule 0 (allow)" in out


def test_default_deny(write_policies: Write, capsys: pytest.CaptureFixture[str]) -> None:
    """With no policy, ``--default deny`` denies and the default tier is named."""
    empty = write_policies({})
    assert main(_check(empty, WEB, "--default", "deny", "--output", "json")) == 1
    assert json.loads(capsys.readouterr().out)["tier"] == "default"


def test_trust_domain_decides_service_accounts(policies: Path) -> None:
    """ServiceAccount sources name the local trust domain given by ``--trust-domain``."""
    peer = "spiffe://corp.internal/ns/shop/sa/web"
    assert main(_check(policies, peer)) == 1
    assert main(_check(policies, peer, "--trust-domain", "corp.internal")) == 0


def test_trust_domain_falls_back_to_the_environment(
    policies: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without ``--trust-domain``, SIGIL_TRUST_DOMAIN names the local trust domain; the flag beats it."""
    monkeypatch.setenv("SIGIL_TRUST_DOMAIN", "corp.internal")
    peer = "spiffe://corp.internal/ns/shop/sa/web"
    assert main(_check(policies, peer)) == 0
    assert main(_check(policies, WEB)) == 1
    assert main(_check(policies, WEB, "--trust-domain", "example.org")) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--peer", "spiffe://Example.org/x"], "invalid SPIFFE ID"),
        (["--labels", "app"], "expected key=value"),
        (["--labels", "app=a b"], "label value"),
        (["--namespace", "Shop"], "namespace"),
        (["--trust-domain", "bad domain"], "trust domain"),
        (["--peer-address", "10.0.0.300"], "not an IPv4 or IPv6 address"),
        (["--workload-id-template", "sa/{service_account}"], "names no {namespace}"),
    ],
)
def test_bad_input_exits_2(
    policies: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A malformed peer, label, namespace or trust domain exits 2 with the reason on stderr."""
    assert main([*_check(policies, WEB), *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert message in captured.err


def test_bad_port_exits_2(policies: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A port out of range is a usage error: exit 2 and a message."""
    with pytest.raises(SystemExit) as exited:
        main(_check(policies, WEB, port="70000"))
    assert exited.value.code == 2
    assert "not a port" in capsys.readouterr().err


def test_bad_policy_file_exits_2(write_policies: Write, capsys: pytest.CaptureFixture[str]) -> None:
    """A policy file out of schema exits 2, naming the file and field on stderr."""
    broken = ap("p", action="PERMIT")
    directory = write_policies({"bad.yaml": dump(broken)})
    assert main(_check(directory, WEB)) == 2
    err = capsys.readouterr().err
    assert "bad.yaml: spec.action: expected one of 'ALLOW', 'DENY'" in err


def test_missing_policy_directory_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A policy directory that does not exist exits 2 with a message."""
    assert main(_check(tmp_path / "nowhere", WEB)) == 2
    assert "nowhere" in capsys.readouterr().err


def test_console_script_exit_code(policies: Path) -> None:
    """The installed ``sigil-enforcer`` command exits 1 on a denial, printing ``denied``."""
    script = Path(sys.executable).parent / "sigil-enforcer"
    done = subprocess.run(  # noqa: S603 -- our own console script, fixed arguments
        [str(script), *_check(policies, WEB, port="1")], capture_output=True, text=True, check=False
    )
    assert (done.returncode, done.stdout) == (1, "denied\n")


def test_peer_address_reaches_rules_with_source_cidrs(
    write_policies: Write, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--peer-address`` is the address sourceCIDRs are matched against; without it no such rule matches."""
    policies = write_policies(
        {"p.yaml": dump(ap("net", rules=[network_rule([sa("web")], sourceCIDRs=["10.0.0.0/8"])]))}
    )
    assert main(_check(policies, WEB, "--peer-address", "10.2.3.4")) == 0
    assert main(_check(policies, WEB, "--peer-address", "192.168.0.1")) == 1
    assert main(_check(policies, WEB)) == 1
    assert capsys.readouterr().out == "allowed\ndenied\ndenied\n"


@pytest.mark.parametrize(
    ("default", "peer", "code"),
    [
        ("authenticated", "spiffe://partner.org/x", 0),
        ("authenticated", "none", 1),
        ("local-authenticated", "spiffe://partner.org/x", 1),
        ("local-authenticated", WEB, 0),
        ("audit", "none", 0),
    ],
)
def test_every_default_decides_as_documented(
    write_policies: Write, default: str, peer: str, code: int
) -> None:
    """``--default`` takes allow, deny, authenticated, local-authenticated and audit."""
    assert main(_check(write_policies({}), peer, "--default", default)) == code


def test_explain_warns_of_an_admin_policy_escapable_by_relabelling(
    write_policies: Write, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--explain`` says when the deciding Admin policy picks pods by labels their owner can change."""
    policies = write_policies(
        {
            "c.yaml": dump(
                cap("lock-db", pods={"app": "db"}, rules=[rule([sa("web", "shop")], action="Deny")])
            )
        }
    )
    assert main(_check(policies, WEB, "--explain")) == 1
    assert "warning: lock-db selects pods by labels" in capsys.readouterr().out
