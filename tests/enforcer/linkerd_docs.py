"""Builders of Linkerd policy objects as a Linkerd user writes them, shared by the Linkerd dialect's tests."""

from __future__ import annotations

from typing import Any

from sigil.enforcer.policy.dialects.base import (
    Exactness,
    SourcedDocument,
    TranslateOptions,
    Translation,
)
from sigil.enforcer.policy.dialects.linkerd import DIALECT

Doc = dict[str, Any]

POLICY = "policy.linkerd.io"
TD = "cluster.local"


def identity(account: str, namespace: str, trust_domain: str = TD) -> str:
    """The Linkerd identity of ServiceAccount ``namespace/account``."""
    return f"{account}.{namespace}.serviceaccount.identity.linkerd.{trust_domain}"


def server(
    name: str,
    port: int | str,
    *,
    namespace: str = "shop",
    match: dict[str, str] | None = None,
    access: str | None = None,
    labels: dict[str, str] | None = None,
    created: str | None = None,
    version: str = "v1beta3",
) -> Doc:
    """A Server selecting pods by ``match`` labels ({} = every pod of the namespace) and one port."""
    spec: Doc = {
        "podSelector": {"matchLabels": match or {}},
        "port": port,
        "proxyProtocol": "unknown",
    }
    if access is not None:
        spec["accessPolicy"] = access
    meta: Doc = {"name": name, "namespace": namespace}
    if labels:
        meta["labels"] = labels
    if created:
        meta["creationTimestamp"] = created
    return {"apiVersion": f"{POLICY}/{version}", "kind": "Server", "metadata": meta, "spec": spec}


def ref(kind: str, name: str, namespace: str | None = None) -> Doc:
    """A reference to an authentication (``group`` as Linkerd's docs write it)."""
    raw: Doc = {
        "group": "" if kind in ("ServiceAccount", "Namespace") else POLICY,
        "kind": kind,
        "name": name,
    }
    if namespace is not None:
        raw["namespace"] = namespace
    return raw


def authorization(
    name: str,
    *,
    server: str | None = None,
    namespace: str = "shop",
    target: Doc | None = None,
    refs: list[Doc] | None = None,
) -> Doc:
    """An AuthorizationPolicy targeting Server ``server``, or the namespace when ``server`` is None."""
    if target is None:
        target = (
            {"group": "core", "kind": "Namespace", "name": namespace}
            if server is None
            else {"group": POLICY, "kind": "Server", "name": server}
        )
    return {
        "apiVersion": f"{POLICY}/v1alpha1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"targetRef": target, "requiredAuthenticationRefs": refs or []},
    }


def mesh_tls(
    name: str,
    identities: list[str] | None = None,
    *,
    refs: list[Doc] | None = None,
    namespace: str = "shop",
) -> Doc:
    """A MeshTLSAuthentication."""
    spec: Doc = {}
    if identities is not None:
        spec["identities"] = identities
    if refs is not None:
        spec["identityRefs"] = refs
    return {
        "apiVersion": f"{POLICY}/v1alpha1",
        "kind": "MeshTLSAuthentication",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def networks(name: str, *nets: tuple[str, list[str]] | str, namespace: str = "shop") -> Doc:
    """A NetworkAuthentication; each network is a CIDR or (CIDR, exceptions)."""
    listed = [
        {"cidr": net} if isinstance(net, str) else {"cidr": net[0], "except": net[1]}
        for net in nets
    ]
    return {
        "apiVersion": f"{POLICY}/v1alpha1",
        "kind": "NetworkAuthentication",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"networks": listed},
    }


def namespace(name: str, default: str | None = None) -> Doc:
    """A Namespace, annotated with a default inbound policy when ``default`` is given."""
    meta: Doc = {"name": name}
    if default is not None:
        meta["annotations"] = {"config.linkerd.io/default-inbound-policy": default}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def server_authorization(name: str, server: Doc, client: Doc, *, namespace: str = "shop") -> Doc:
    """A legacy ServerAuthorization (``server`` is ``{name}`` or ``{selector}``)."""
    return {
        "apiVersion": f"{POLICY}/v1beta1",
        "kind": "ServerAuthorization",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"server": server, "client": client},
    }


def deployment(
    name: str,
    labels: dict[str, str],
    ports: dict[str, int],
    *,
    namespace: str = "shop",
    annotations: dict[str, str] | None = None,
) -> Doc:
    """A Deployment whose pods carry ``labels`` and name their container ports ``ports``."""
    meta: Doc = {"labels": labels}
    if annotations:
        meta["annotations"] = annotations
    container = {
        "name": "app",
        "image": "app",
        "ports": [{"name": port, "containerPort": number} for port, number in ports.items()],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"template": {"metadata": meta, "spec": {"containers": [container]}}},
    }


def translate(*docs: dict[str, Any], options: TranslateOptions | None = None) -> Translation:
    """The dialect's translation of ``docs`` as one batch read from ``linkerd.yaml``."""
    sourced = [SourcedDocument(doc, f"linkerd.yaml#{index}") for index, doc in enumerate(docs)]
    return DIALECT.translate(sourced, options or TranslateOptions())


def only_policy(translation: Translation) -> dict[str, Any]:
    """The one AuthorizationPolicy of ``translation``."""
    (translated,) = [
        t for t in translation.documents if t.document["kind"] == "AuthorizationPolicy"
    ]
    return dict(translated.document)


def findings(translation: Translation, exactness: Exactness) -> list[str]:
    """The findings of ``exactness``, as the report prints them."""
    return [str(f) for f in translation.findings if f.exactness is exactness]


def with_identities(*ids: str, options: TranslateOptions | None = None) -> Translation:
    """A Server on the web pods' port 8080 whose policy requires a MeshTLSAuthentication of ``ids``."""
    return translate(
        server("web", 8080, match={"app": "web"}),
        authorization("a", server="web", refs=[ref("MeshTLSAuthentication", "m")]),
        mesh_tls("m", list(ids)),
        options=options,
    )
