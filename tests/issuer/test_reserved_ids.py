"""Sigil's own IDs (``/sigil/agent/...``, ``/sigil/server...``) come only from attestation and the server itself:
no entry, workload ID template or admin mint hands one out."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sigil_testing.controlplane import ControlPlane
from sigil_testing.issuer import client_for, running_issuer
from sigil_testing.realissuer import issuer_on
from sigil_testing.realkube import Namespace, add_node, named_namespace

from sigil.ca.config import ConfigError
from sigil.ca.keys import generate_key
from sigil.issuer.admin import LocalAdmin
from sigil.issuer.cli import main
from sigil.issuer.client import X509SvidRequest, make_csr
from sigil.issuer.edge.listeners import IssuerServer
from sigil.issuer.errors import NotEntitledError
from sigil.issuer.kube.identity import WorkloadIdTemplate
from sigil.issuer.settings import load_server_settings

_RESERVED = [
    "spiffe://example.org/sigil/agent",
    "spiffe://example.org/sigil/agent/join/0123456789abcdef",
    "spiffe://example.org/sigil/agent/k8s/test/node-a",
    "spiffe://example.org/sigil/server",
    "spiffe://example.org/sigil/server/replica-2",
]
_PARENT = "spiffe://example.org/sigil/agent/join/0123456789abcdef"


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    return code, capsys.readouterr().err


@pytest.mark.parametrize("spiffe_id", _RESERVED)
def test_an_entry_claiming_an_agent_or_server_id_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], spiffe_id: str
) -> None:
    """``entry create`` for a reserved ID exits 1 saying the ID is reserved, and no entry is listed."""
    base = ["--data-dir", str(tmp_path)]
    code, err = _run(
        capsys,
        *base,
        "entry",
        "create",
        "--spiffe-id",
        spiffe_id,
        "--parent-id",
        _PARENT,
        "--selector",
        "unix:uid:0",
    )
    assert code == 1
    assert "reserved for Sigil's own" in err
    assert _run(capsys, *base, "entry", "list", "--output", "json")[0] == 0


def test_an_id_that_only_starts_alike_is_not_reserved(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``/sigil/agentic`` and ``/sigil/servers`` are ordinary IDs: only the reserved segments count."""
    base = ["--data-dir", str(tmp_path)]
    for path in ("sigil/agentic", "sigil/servers/x"):
        code, err = _run(
            capsys,
            *base,
            "entry",
            "create",
            "--spiffe-id",
            f"spiffe://example.org/{path}",
            "--parent-id",
            _PARENT,
            "--selector",
            "unix:uid:0",
        )
        assert code == 0, err


@pytest.mark.parametrize("verb", ["x509", "jwt"])
@pytest.mark.parametrize("spiffe_id", [_RESERVED[1], _RESERVED[3]])
def test_admin_mint_refuses_agent_and_server_ids(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], verb: str, spiffe_id: str
) -> None:
    """``x509 mint`` and ``jwt mint`` of an agent's or the server's ID exit 1: nothing to impersonate them with."""
    extra = ["--audience", "x"] if verb == "jwt" else []
    code, err = _run(
        capsys, "--data-dir", str(tmp_path), verb, "mint", "--spiffe-id", spiffe_id, *extra
    )
    assert code == 1
    assert f"{verb} mint may not claim them" in err


def test_a_template_that_names_an_agent_id_stops_the_start(tmp_path: Path) -> None:
    """A workload ID template under /sigil/agent is refused when the configuration is read."""
    config = tmp_path / "sigil.yaml"
    config.write_text(
        "server:\n  kubernetes:\n    workload_id_template: 'sigil/agent/k8s/{node_name}/{pod_name}'\n"
    )
    with pytest.raises(ConfigError, match="reserved for Sigil's own agents"):
        load_server_settings(config, data_dir=str(tmp_path))


@pytest.fixture
async def server(
    control_plane: ControlPlane, kube_namespace: Namespace, tmp_path: Path
) -> AsyncIterator[IssuerServer]:
    """An issuer whose workload IDs are ``/NAMESPACE/SERVICE_ACCOUNT``: a pod in namespace ``sigil`` could aim high."""
    settings = issuer_on(
        control_plane,
        tmp_path / "data",
        agent_namespace=kube_namespace.name,
        kube={"workload_id_template": WorkloadIdTemplate("{namespace}/{service_account}")},
    )
    async with running_issuer(settings) as running:
        yield running


@pytest.mark.kube
async def test_a_pod_whose_names_render_the_server_id_is_refused(
    control_plane: ControlPlane, server: IssuerServer
) -> None:
    """A pod in namespace sigil with ServiceAccount server gets 403 not_entitled, not the server's ID."""
    sigil = named_namespace(control_plane, "sigil")
    name = f"imposter-{secrets.token_hex(3)}"
    pod = sigil.pod(name, node=add_node(control_plane), service_account="server")
    token = sigil.token(pod, "sigil-workload")
    async with client_for(server) as client:
        with pytest.raises(NotEntitledError) as refused:
            await client.workload_x509_svid(token, make_csr(generate_key()))
    assert refused.value.problem["status"] == 403  # type: ignore[attr-defined]
    assert "spiffe://example.org/sigil/server" in str(refused.value)


@pytest.mark.kube
async def test_an_entry_written_into_the_database_for_an_agent_id_is_never_served(
    server: IssuerServer,
) -> None:
    """An entry INSERTed straight into the database for an agent ID gives the matching workload nothing."""
    admin = LocalAdmin(server.issuer.ca, server.issuer.registry)
    token = await admin.generate_token(600)
    async with client_for(server) as client:
        await client.attest_join_token(token["token"])
        async with server.issuer.ca.store.engine.begin() as connection:
            await connection.execute(
                sa.text(
                    "INSERT INTO registration_entries (entry_id, spiffe_id, parent_id, selectors, dns_names,"
                    " created_at) VALUES ('forged', :s, :p, 'unix:uid:0', '', CURRENT_TIMESTAMP)"
                ),
                {"s": "spiffe://example.org/sigil/agent/k8s/test/node-b", "p": token["agent_id"]},
            )
        (result,) = await client.batch_x509_svids(
            [X509SvidRequest(make_csr(generate_key()), selectors=("unix:uid:0",))]
        )
    assert isinstance(result.error, NotEntitledError)
    assert result.svids == ()
