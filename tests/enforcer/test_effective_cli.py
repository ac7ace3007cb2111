"""``sigil-enforcer effective``: the view of a pod from a policy directory, as a user at a shell sees it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from enforcer.policy_docs import anyone, ap, cap, dump, network_rule, rule, sa

from sigil.ca.spiffe_id import TrustDomain
from sigil.enforcer.authorizer import Authorizer
from sigil.enforcer.cli import main
from sigil.enforcer.policy import Target

Write = Callable[[Mapping[str, str]], Path]


@pytest.fixture
def policies(write_policies: Write) -> Path:
    """The shop's db accepts web on 5432, a dry-run DENY tries out refusing batch, an admin guard passes shop."""
    return write_policies(
        {
            "shop.yaml": dump(
                ap("db-from-web", match={"app": "db"}, rules=[rule([sa("web")], ports=[5432])]),
                ap("try-no-batch", action="DENY", rules=[rule([sa("batch")])], dry_run=True),
            ),
            "cluster.yaml": dump(
                cap(
                    "guard",
                    priority=1,
                    rules=[
                        rule([sa("*", "shop")], action="Pass"),
                        rule([anyone()], action="Deny"),
                    ],
                )
            ),
        }
    )


def _effective(policies: Path, *extra: str) -> list[str]:
    return [
        "effective",
        "--policies",
        str(policies),
        "--namespace",
        "shop",
        "--labels",
        "app=db",
        *extra,
    ]


def test_json_names_each_rule_its_source_and_who_may_connect(
    policies: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The JSON lists the rules in evaluation order, each policy's file and document, and the access table."""
    assert main(_effective(policies, "--output", "json")) == 0
    view = json.loads(capsys.readouterr().out)
    assert view["schema_version"] == 2
    assert [
        (r["tier"], r["policy"], r["rule"], r["action"], r["dry_run"]) for r in view["rules"]
    ] == [
        ("admin", "guard", 0, "pass", False),
        ("admin", "guard", 1, "deny", False),
        ("namespace", "shop/try-no-batch", 0, "deny", True),
        ("namespace", "shop/db-from-web", 0, "allow", False),
    ]
    sources = {p["name"]: p["source"] for p in view["policies"]}
    assert sources["db-from-web"]["name"] == str(policies / "shop.yaml")
    assert (sources["db-from-web"]["document"], sources["try-no-batch"]["document"]) == (0, 1)
    assert sources["guard"]["document"] is None  # the only document of its file
    assert view["ports"] == [5432, "other"]
    rows = {(a["peer"]["class"], a["peer"]["name"]): a["verdicts"] for a in view["access"]}
    web = rows["service-account", "shop/web"]
    assert [(v["port"], v["decision"], v["policy"]) for v in web] == [
        (5432, "allowed", "shop/db-from-web"),
        ("other", "denied", None),
    ]
    batch = rows["service-account", "shop/batch"][0]
    assert batch["dry_run"]["decision"] == "denied"
    assert batch["dry_run"]["policy"] == "shop/try-no-batch"
    assert [v["policy"] for v in rows["no-svid", ""]] == ["guard", "guard"]


def test_text_shows_sources_and_a_shadowed_policy(
    write_policies: Write, capsys: pytest.CaptureFixture[str]
) -> None:
    """A namespace DENY that the admin tier always pre-empts is flagged as never deciding, with its file."""
    directory = write_policies(
        {
            "a.yaml": dump(cap("lockdown", priority=0, rules=[rule([anyone()], action="Deny")])),
            "b.yaml": dump(ap("no-web", action="DENY", rules=[rule([sa("web")])])),
        }
    )
    assert main(_effective(directory)) == 0
    out = capsys.readouterr().out
    assert "AuthorizationPolicy shop/no-web (DENY) [SHADOWED: can never decide]" in out
    assert f"from file {directory / 'b.yaml'} (revision " in out
    assert "serviceAccount shop/web\n    other ports      denied by admin lockdown rule 0" in out


def test_port_and_default_shape_the_table(
    policies: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--port`` keeps one column and ``--default deny`` shows in the target."""
    assert main(_effective(policies, "--port", "80", "--default", "deny", "--output", "json")) == 0
    view = json.loads(capsys.readouterr().out)
    assert view["ports"] == [80]
    assert view["target"]["default"] == "deny"
    assert view["target"]["port"] == 80


def test_local_authenticated_default_and_networks_in_the_text(
    write_policies: Write, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--default local-authenticated`` admits local peers only; a rule with sourceCIDRs and a port range
    splits the table by address group and port stretch, each named in the text."""
    directory = write_policies(
        {
            "lan.yaml": dump(
                ap(
                    "lan",
                    action="DENY",
                    rules=[
                        network_rule(
                            [sa("batch")],
                            sourceCIDRs=["10.0.0.0/8"],
                            portRanges=[{"start": 9000, "end": 9100}],
                        )
                    ],
                )
            )
        }
    )
    args = _effective(directory, "--default", "local-authenticated")
    assert main([*args, "--output", "json"]) == 0
    view = json.loads(capsys.readouterr().out)
    assert view["target"]["default"] == "local-authenticated"
    assert view["ports"] == ["9000-9100", "other"]
    rows = {
        (a["peer"]["class"], a["address"]["group"]): [v["decision"] for v in a["verdicts"]]
        for a in view["access"]
    }
    assert rows["service-account", "in 10.0.0.0/8"] == ["denied", "allowed"]
    assert rows["service-account", "no known address"] == ["allowed", "allowed"]
    assert rows["other-trust-domain", "in 10.0.0.0/8"] == ["denied", "denied"]
    assert rows["no-svid", "no known address"] == ["denied", "denied"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "default local-authenticated" in out
    assert "deny serviceAccount shop/batch on ports 9000-9100 from 10.0.0.0/8" in out
    assert "serviceAccount shop/batch  [address: in 10.0.0.0/8 (such as 10.0.0.1)]\n" in out
    # A class decided alike at every address is shown once.
    assert "a peer without a valid SVID\n    ports 9000-9100  denied by the default\n" in out
    assert "    ports 9000-9100  denied by namespace shop/lan rule 0" in out
    with pytest.raises(SystemExit) as refused:
        main([*args[:-1], "sometimes"])
    assert refused.value.code == 2
    assert "local-authenticated" in capsys.readouterr().err  # the choices are named


def test_a_refused_document_is_an_error_not_a_silent_gap(
    write_policies: Write, capsys: pytest.CaptureFixture[str]
) -> None:
    """A policy file with a broken document exits 2 and names the field, rather than showing a partial view."""
    directory = write_policies(
        {"bad.yaml": dump(ap("x", action="MAYBE", rules=[rule([sa("web")])]))}
    )
    assert main(_effective(directory)) == 2
    assert "spec.action" in capsys.readouterr().err


def test_bad_labels_exit_2_with_the_reason(
    policies: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A malformed ``--labels`` item is refused with what was wrong."""
    assert (
        main(["effective", "--policies", str(policies), "--namespace", "shop", "--labels", "app"])
        == 2
    )
    assert "expected key=value" in capsys.readouterr().err


def test_the_console_script_runs(policies: Path) -> None:
    """The installed ``sigil-enforcer effective`` prints the JSON view and exits 0."""
    script = Path(sys.executable).parent / "sigil-enforcer"
    done = subprocess.run(  # noqa: S603 -- our own console script, fixed arguments
        [str(script), *_effective(policies, "--output", "json")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["target"]["namespace"] == "shop"


def test_an_authorizer_on_a_directory_shows_its_files_and_pod(policies: Path) -> None:
    """What ``/policy`` serves for a proxy reading a directory: its revision, scope, and the guarded pod's view."""
    authorizer = Authorizer(
        trust_domain=TrustDomain("example.org"),
        target=Target("shop", {"app": "db"}),
        policies=policies,
        default_allow=False,
    )
    authorizer.load()
    page = authorizer.policy_view(port=5432)
    assert page["revision"] == 1
    assert page["scope"] == {"source": "directory", "directory": str(policies), "policies": 3}
    view = page["effective"]
    assert (view["target"]["default"], view["ports"]) == ("deny", [5432])
    sources = {p["name"]: p["source"] for p in view["policies"]}
    assert sources["db-from-web"]["name"] == str(policies / "shop.yaml")
    assert sources["guard"]["kind"] == "file"
