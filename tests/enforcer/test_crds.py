"""The CRDs in deploy/crds are generated from the same schema the file loader enforces."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sigil.enforcer.cli import main
from sigil.enforcer.policy.crds import crd_documents, render
from sigil.enforcer.policy.loader import parse_file

CRDS = Path(__file__).parents[2] / "deploy" / "crds"


@pytest.mark.parametrize("name", sorted(crd_documents()))
def test_committed_crds_equal_generated(name: str) -> None:
    """deploy/crds holds exactly what ``sigil-enforcer crds --write deploy/crds`` produces today."""
    assert (CRDS / name).read_text(encoding="utf-8") == render(crd_documents()[name])


def _untyped(schema: dict[str, Any], path: str) -> list[str]:
    """Paths of schema nodes without a type (a structural schema must type every node)."""
    missing = [] if "type" in schema else [path]
    for name, child in schema.get("properties", {}).items():
        missing += _untyped(child, f"{path}.{name}")
    if "items" in schema:
        missing += _untyped(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        missing += _untyped(schema["additionalProperties"], f"{path}{{}}")
    return missing


@pytest.mark.parametrize("name", sorted(crd_documents()))
def test_crd_schemas_are_structural(name: str) -> None:
    """Every node of each CRD schema is typed, as the API server requires of apiextensions/v1 CRDs."""
    crd = yaml.safe_load((CRDS / name).read_text(encoding="utf-8"))
    (version,) = crd["spec"]["versions"]
    assert version["name"] == "v1alpha1"
    assert crd["spec"]["group"] == "authz.sigil.dev"
    assert _untyped(version["schema"]["openAPIV3Schema"], "") == []


def test_crd_scopes() -> None:
    """AuthorizationPolicy is namespaced and ClusterAuthorizationPolicy is cluster-scoped."""
    scopes = {
        crd["spec"]["names"]["kind"]: crd["spec"]["scope"] for crd in crd_documents().values()
    }
    assert scopes == {"AuthorizationPolicy": "Namespaced", "ClusterAuthorizationPolicy": "Cluster"}


def test_crds_check_spots_stale_files(tmp_path: Path) -> None:
    """``crds --check`` exits 0 on fresh files and 1 once a file is edited by hand."""
    assert main(["crds", "--write", str(tmp_path)]) == 0
    assert main(["crds", "--check", str(tmp_path)]) == 0
    (tmp_path / "authorizationpolicies.authz.sigil.dev.yaml").write_text(
        "edited\n", encoding="utf-8"
    )
    assert main(["crds", "--check", str(tmp_path)]) == 1


def test_readme_policy_example_loads() -> None:
    """The example policies in the README's policy section pass the schema, so the documentation cannot rot."""
    text = (CRDS.parents[1] / "README.md").read_text(encoding="utf-8")
    section = text.split("## Authorization policy", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    result = parse_file(example, file="README.md")
    assert result.errors == ()
    assert [p.name for p in result.policies] == ["db-from-web", "quarantine-and-monitoring"]


def _nodes(schema: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every node of a schema with its path (``[]`` for list items)."""
    yield path, schema
    for name, child in schema.get("properties", {}).items():
        yield from _nodes(child, f"{path}.{name}")
    if "items" in schema:
        yield from _nodes(schema["items"], f"{path}[]")


@pytest.mark.parametrize("name", sorted(crd_documents()))
def test_no_policy_field_can_be_pruned_into_a_wider_rule(name: str) -> None:
    """Nothing under spec keeps unknown fields, and every rule must keep a criterion after pruning: a CEL rule
    refuses a rule with none of sources, notSources and networkAttributes, and another one networkAttributes
    naming none of its six criteria (``ports: []`` is written on purpose; pruning never produces it)."""
    crd = yaml.safe_load((CRDS / name).read_text(encoding="utf-8"))
    (version,) = crd["spec"]["versions"]
    nodes = dict(_nodes(version["schema"]["openAPIV3Schema"]["properties"]["spec"], "spec"))
    assert [p for p, n in nodes.items() if n.get("x-kubernetes-preserve-unknown-fields")] == []
    rule = nodes["spec.rules[]"]
    criterion = "has(self.sources) || has(self.notSources) || has(self.networkAttributes)"
    assert {"rule": criterion}.items() <= rule["x-kubernetes-validations"][0].items()
    network = nodes["spec.rules[].networkAttributes"]["x-kubernetes-validations"][0]["rule"]
    assert network == (
        "has(self.ports) || has(self.portRanges) || has(self.exceptPorts) || has(self.exceptPortRanges)"
        " || has(self.sourceCIDRs) || has(self.exceptSourceCIDRs)"
    )
