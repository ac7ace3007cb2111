"""``sigil-enforcer import linkerd`` and ``diff`` on Linkerd policy: migrating a mesh's files, checked."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from enforcer.linkerd_docs import (
    authorization,
    identity,
    mesh_tls,
    namespace,
    networks,
    ref,
    server,
)
from enforcer.policy_docs import ap, dump, network_rule, sa
from enforcer.test_linkerd_properties import linkerd_sets
from hypothesis import HealthCheck, given, settings

from sigil.enforcer.cli import main

Write = Callable[[Mapping[str, str]], Path]
TD = ["--trust-domain", "cluster.local"]


def linkerd_files() -> dict[str, str]:
    """The web Server's port 8080 admits the front account from the pod network, except one block."""
    return {
        "linkerd.yaml": dump(
            server("web", 8080, match={"app": "web"}),
            authorization(
                "front",
                server="web",
                refs=[ref("MeshTLSAuthentication", "front"), ref("NetworkAuthentication", "pods")],
            ),
            mesh_tls("front", [identity("front", "shop")]),
            networks("pods", ("10.0.0.0/8", ["10.9.0.0/16"])),
        )
    }


def sigil_by_hand(account: str) -> str:
    """What a user would write in Sigil for the same intent, admitting ``account``."""
    policy = ap(
        "web",
        match={"app": "web"},
        rules=[
            network_rule(
                [sa(account)], sourceCIDRs=["10.0.0.0/8"], exceptSourceCIDRs=["10.9.0.0/16"]
            )
        ],
    )
    policy["spec"]["targetRefs"][0]["ports"] = [8080]
    return dump(policy)


def test_imported_files_decide_as_the_linkerd_files(
    write_policies: Write, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``import`` reports the translation exact, and ``diff`` finds what it wrote equivalent to the source."""
    linkerd = write_policies(linkerd_files())
    out = tmp_path / "imported"
    assert main(["import", "linkerd", "-f", str(linkerd), "--output", str(out), *TD]) == 0
    assert main(["diff", str(linkerd), str(out), *TD]) == 0


def test_diff_finds_a_hand_written_migration_equivalent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Sigil policy written by hand for the same intent is equivalent to the Linkerd files."""
    linkerd, sigil = tmp_path / "linkerd", tmp_path / "sigil"
    linkerd.mkdir()
    sigil.mkdir()
    (linkerd / "policy.yaml").write_text(linkerd_files()["linkerd.yaml"])
    (sigil / "policy.yaml").write_text(sigil_by_hand("front"))
    assert main(["diff", str(linkerd), str(sigil), *TD]) == 0


def test_diff_shows_where_a_migration_differs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A hand-written policy admitting another account differs, and diff names the cases."""
    linkerd, sigil = tmp_path / "linkerd", tmp_path / "sigil"
    linkerd.mkdir()
    sigil.mkdir()
    (linkerd / "policy.yaml").write_text(linkerd_files()["linkerd.yaml"])
    (sigil / "policy.yaml").write_text(sigil_by_hand("back"))
    assert main(["diff", str(linkerd), str(sigil), *TD]) == 1
    out = capsys.readouterr().out
    assert "8080" in out
    assert "linkerd-server-web" in out


def test_import_reports_what_is_not_exact(
    write_policies: Write, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Server on a named port no workload resolves: import exits 1 and says what was refused."""
    linkerd = write_policies({"a.yaml": dump(server("web", "http"))})
    argv = ["import", "linkerd", "-f", str(linkerd), "--output", str(tmp_path / "o"), *TD]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "refused: linkerd Server shop/web" in out
    assert "'http'" in out


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(objects=linkerd_sets())
def test_import_then_diff_is_equivalent_whenever_import_says_exact(
    objects: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """For generated Linkerd sets, ``import`` exiting 0 (exact) means ``diff`` finds its output equivalent.

    The readers route only ``policy.linkerd.io`` documents to the translator (``policy/foreign.py``): a
    ``Namespace`` beside them is skipped by ``import`` and refused by ``diff``, so namespace defaults are
    left out here (the translator's own tests cover them).
    """
    objects = [obj for obj in objects if obj["kind"] != "Namespace"]
    root = tmp_path_factory.mktemp("linkerd")
    source, out = root / "source", root / "imported"
    source.mkdir()
    (source / "policy.yaml").write_text(dump(*objects) if objects else "")
    if main(["import", "linkerd", "-f", str(source), "--output", str(out), *TD]) == 0:
        assert main(["diff", str(source), str(out), *TD]) == 0


def test_import_carries_a_namespace_default_beside_the_policy(
    write_policies: Write, tmp_path: Path
) -> None:
    """A Namespace annotated ``deny`` among the files becomes the Baseline policy of that namespace, and the
    imported set decides as the source (the Namespace included) on every case."""
    linkerd = write_policies({**linkerd_files(), "namespace.yaml": dump(namespace("shop", "deny"))})
    out = tmp_path / "imported"
    assert main(["import", "linkerd", "-f", str(linkerd), "--output", str(out), *TD]) == 0
    written = "".join(path.read_text() for path in sorted(out.glob("*.yaml")))
    assert "linkerd-default-shop" in written
    assert main(["diff", str(linkerd), str(out), *TD]) == 0
    # Without the Namespace the two differ: its default is part of the meaning.
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "linkerd.yaml").write_text(linkerd_files()["linkerd.yaml"])
    assert main(["diff", str(plain), str(out), *TD]) == 1
