"""A protocol-faithful stand-in for kube-apiserver, for what the real one (:mod:`sigil_testing.controlplane`)
cannot be made to do on demand.

Tests use the real API server wherever it can do the job. What still uses this, and why:

- ``tests/issuer/test_tokenreview_faults.py``: tokens judged by a clock a test moves (expired, not yet valid,
  shorter-lived than TokenRequest's ten minutes), ``--service-account-lookup=false`` (so the issuer's own pod GET and
  UID check are what refuse), and a server from before TokenReview audiences.
- ``tests/issuer/test_policies.py::test_a_crd_with_a_misspelled_criterion_is_refused_never_widened``: custom
  resources stored without schema validation, the only way to deliver unknown fields or a rule left empty to the
  issuer's CRD watch (a real API server prunes or refuses them under the CRDs' structural schema and CEL rule).
- ``tests/issuer/test_kube_standin.py`` checks the stand-in itself against the official client; ``bench/issue.py``
  measures TokenReview-authenticated issuance against it. Its clock is any ``time.time``-shaped callable
  (tests pass ``sigil_testing.clock.FakeClock.seconds``).

It speaks the wire format the real API server speaks, so the real ``kubernetes`` client (whose pydantic models
reject missing required fields) and raw HTTP watchers both work against it unchanged:

- ``POST /apis/authentication.k8s.io/v1/tokenreviews`` (:mod:`sigil_testing.kube_tokens`);
- lists, ``GET`` and ``?watch=true`` streams of pods, nodes, namespaces and the ``authz.sigil.dev/v1alpha1`` policy
  resources, with field and label selectors (:mod:`sigil_testing.kube_store`, :mod:`sigil_testing.kube_selectors`);
  the custom resources are stored without schema validation, as a server whose CRD is older than the client's
  schema would, so the client's own refusals can be tested;
- errors as ``Status`` objects; requests need the stand-in's own bearer token, as the real server would.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from sigil_testing.kube_selectors import NODE_FIELDS, POD_FIELDS
from sigil_testing.kube_store import (
    Event,
    Obj,
    Resource,
    collection,
    get_object,
    namespace_object,
    node_object,
    pod_object,
    status,
)
from sigil_testing.kube_tokens import TokenAuthority

__all__ = ["DEFAULT_ISSUER", "KubeApiServer"]

DEFAULT_ISSUER = "https://kubernetes.default.svc.cluster.local"
_CUSTOM_GROUP = "authz.sigil.dev/v1alpha1"
_CUSTOM_KINDS = {
    "AuthorizationPolicy": "authorizationpolicies",
    "ClusterAuthorizationPolicy": "clusterauthorizationpolicies",
}


def _copy(obj: Obj) -> Obj:
    return json.loads(json.dumps(obj))  # type: ignore[no-any-return]


class KubeApiServer:
    """kube-apiserver on 127.0.0.1 at a random port; ``async with KubeApiServer() as kube:``.

    ``service_account_lookup`` mirrors the ``--service-account-lookup`` flag: when False, TokenReview no longer
    checks that the bound pod still exists, so the caller's own checks are what stands between it and a stale
    token. ``supports_audiences=False`` behaves like servers from before TokenReview audiences (Kubernetes < 1.13):
    ``spec.audiences`` is ignored and ``status.audiences`` is never returned.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        issuer: str = DEFAULT_ISSUER,
        service_account_lookup: bool = True,
        supports_audiences: bool = True,
    ) -> None:
        self.clock = clock
        self.tokens = TokenAuthority(issuer)
        self.service_account_lookup = service_account_lookup
        self.supports_audiences = supports_audiences
        self.client_token = secrets.token_urlsafe(32)
        self.token_reviews = 0
        self._rv = 1
        self._pods = Resource("Pod", "pods", POD_FIELDS)
        self._nodes = Resource("Node", "nodes", NODE_FIELDS)
        self._namespaces = Resource("Namespace", "namespaces", {})
        # Custom resources by plural; the stand-in applies no CRD schema, like a server whose CRD is older.
        self._custom: dict[str, Resource] = {
            plural: Resource(kind, plural, {}) for kind, plural in _CUSTOM_KINDS.items()
        }
        self._runner: web.AppRunner | None = None
        self._port = 0

    @property
    def issuer(self) -> str:
        return self.tokens.issuer

    @property
    def key_id(self) -> str:
        return self.tokens.key_id

    # ------------------------------------------------------------------------------------- lifecycle
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    async def start(self) -> None:
        """Listen (again, on the same port after ``go_down``)."""
        app = web.Application(middlewares=[self._auth_middleware])
        app.router.add_post("/apis/authentication.k8s.io/v1/tokenreviews", self._token_review)
        app.router.add_get("/api/v1/pods", self._pods_collection)
        app.router.add_get("/api/v1/namespaces/{namespace}/pods", self._pods_collection)
        app.router.add_get("/api/v1/namespaces/{namespace}/pods/{name}", self._pod_get)
        app.router.add_get("/api/v1/nodes", self._nodes_collection)
        app.router.add_get("/api/v1/nodes/{name}", self._node_get)
        app.router.add_get("/api/v1/namespaces", self._namespaces_collection)
        app.router.add_get(f"/apis/{_CUSTOM_GROUP}/{{plural}}", self._custom_collection)
        app.router.add_get(
            f"/apis/{_CUSTOM_GROUP}/namespaces/{{namespace}}/{{plural}}", self._custom_collection
        )
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self._port, reuse_address=True)
        await site.start()
        self._port = runner.addresses[0][1]
        self._runner = runner

    async def go_down(self) -> None:
        """Become unreachable: end every watch, close every connection, stop listening."""
        if self._runner is None:
            return
        for resource in [self._pods, self._nodes, self._namespaces, *self._custom.values()]:
            for watcher in resource.watchers:
                watcher.queue.put_nowait(None)
        runner, self._runner = self._runner, None
        await runner.cleanup()

    async def __aenter__(self) -> KubeApiServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.go_down()

    def write_kubeconfig(self, path: Path) -> Path:
        """Write a kubeconfig (JSON is YAML) that points the real ``kubernetes`` client at this server."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "standin", "cluster": {"server": self.url}}],
            "users": [{"name": "sigil-issuer", "user": {"token": self.client_token}}],
            "contexts": [
                {"name": "standin", "context": {"cluster": "standin", "user": "sigil-issuer"}}
            ],
            "current-context": "standin",
        }
        path.write_text(json.dumps(config, indent=2))
        return path

    # ------------------------------------------------------------------------------------- objects
    def _record(self, resource: Resource, kind: str, obj: Obj, old: Obj | None) -> str:
        self._rv += 1
        rv = self._rv
        obj = _copy(obj)
        obj["metadata"]["resourceVersion"] = str(rv)
        key = (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        if kind == "DELETED":
            del resource.objects[key]
        else:
            resource.objects[key] = obj
        event = Event(rv, kind, obj, old)
        resource.history.append(event)
        for watcher in resource.watchers:
            watcher.queue.put_nowait(event)
        return str(rv)

    def add_node(
        self, name: str, *, uid: str | None = None, labels: Mapping[str, str] | None = None
    ) -> Obj:
        """Register a node (as the kubelet does) and return it."""
        node = node_object(name, uid=uid, labels=labels, now=self.clock())
        self._record(self._nodes, "ADDED", node, None)
        return _copy(self._nodes.objects[("", name)])

    def add_pod(
        self,
        namespace: str,
        name: str,
        *,
        node_name: str | None,
        service_account: str = "default",
        labels: Mapping[str, str] | None = None,
        uid: str | None = None,
        phase: str = "Running",
    ) -> Obj:
        """Create a pod, bound to ``node_name`` (or pending when None), and return it."""
        if (namespace, name) in self._pods.objects:
            raise ValueError(f'pods "{name}" already exists')
        self.tokens.service_account_uid(namespace, service_account)
        pod = pod_object(
            namespace,
            name,
            node_name=node_name,
            service_account=service_account,
            labels=labels,
            uid=uid,
            phase=phase,
            now=self.clock(),
            ordinal=len(self._pods.objects),
        )
        self._record(self._pods, "ADDED", pod, None)
        return self.pod(namespace, name)

    def remove_pod(self, namespace: str, name: str) -> None:
        """Delete a pod; tokens bound to it stop authenticating."""
        old = self._pods.objects[(namespace, name)]
        self._record(self._pods, "DELETED", old, old)

    def pod(self, namespace: str, name: str) -> Obj:
        return _copy(self._pods.objects[(namespace, name)])

    def add_namespace(self, name: str, *, labels: Mapping[str, str] | None = None) -> None:
        """Create or relabel a namespace; it carries ``kubernetes.io/metadata.name`` as the API server sets it."""
        old = self._namespaces.objects.get(("", name))
        uid = old["metadata"]["uid"] if old else None
        namespace = namespace_object(name, uid=uid, labels=labels)
        self._record(self._namespaces, "MODIFIED" if old else "ADDED", namespace, old)

    def apply_custom(self, obj: Mapping[str, Any]) -> None:
        """Create or replace an ``authz.sigil.dev`` resource (as ``kubectl apply`` would, without validation)."""
        new: Obj = json.loads(json.dumps(obj))
        resource = self._custom[_CUSTOM_KINDS[new["kind"]]]
        meta = new["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        old = resource.objects.get(key)
        meta["uid"] = old["metadata"]["uid"] if old else str(uuid.uuid4())
        meta["generation"] = old["metadata"].get("generation", 1) + 1 if old else 1
        self._record(resource, "MODIFIED" if old else "ADDED", new, old)

    # ------------------------------------------------------------------------------------- tokens
    def mint_token(
        self,
        pod: Mapping[str, Any],
        *,
        audiences: Iterable[str] = ("sigil-server",),
        ttl: float = 3600,
        not_before: float = 0,
        service_account: str | None = None,
        pod_uid: str | None = None,
        issuer: str | None = None,
        signing_key: rsa.RSAPrivateKey | None = None,
    ) -> str:
        """A projected ServiceAccount token bound to ``pod``, as the kubelet receives it from TokenRequest.

        ``not_before`` shifts ``nbf`` (and ``iat``) from now; the other keywords forge tokens for negative tests.
        """
        node = self._nodes.objects.get(("", pod["spec"].get("nodeName") or ""))
        return self.tokens.mint(
            pod,
            now=int(self.clock() + not_before),
            node_uid=node["metadata"]["uid"] if node is not None else None,
            audiences=audiences,
            ttl=ttl,
            service_account=service_account,
            pod_uid=pod_uid,
            issuer=issuer,
            signing_key=signing_key,
        )

    def _pod_uid(self, namespace: str, name: str) -> str | None:
        live = self._pods.objects.get((namespace, name))
        return None if live is None else str(live["metadata"]["uid"])

    # ------------------------------------------------------------------------------------- handlers
    @web.middleware
    async def _auth_middleware(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {self.client_token}":
            return status(401, "Unauthorized", "Unauthorized")
        try:
            response: web.StreamResponse = await handler(request)
        except web.HTTPNotFound:
            return status(404, "NotFound", "the server could not find the requested resource")
        return response

    async def _token_review(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return status(400, "BadRequest", "the request body is not JSON")
        problem = self.tokens.bad_request(body)
        if problem:
            return status(400, "BadRequest", problem)
        self.token_reviews += 1
        spec = body["spec"]
        review = self.tokens.review(
            spec["token"],
            list(spec.get("audiences") or []),
            now=self.clock(),
            supports_audiences=self.supports_audiences,
            pod_uid_of=self._pod_uid if self.service_account_lookup else None,
        )
        answer = {
            "kind": "TokenReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": None},
            "spec": spec,
            "status": review,
        }
        return web.json_response(answer, status=201)

    async def _pod_get(self, request: web.Request) -> web.Response:
        return get_object(self._pods, request.match_info["namespace"], request.match_info["name"])

    async def _node_get(self, request: web.Request) -> web.Response:
        return get_object(self._nodes, "", request.match_info["name"])

    async def _pods_collection(self, request: web.Request) -> web.StreamResponse:
        return await collection(self._pods, request, request.match_info.get("namespace"), self._rv)

    async def _nodes_collection(self, request: web.Request) -> web.StreamResponse:
        return await collection(self._nodes, request, None, self._rv)

    async def _namespaces_collection(self, request: web.Request) -> web.StreamResponse:
        return await collection(self._namespaces, request, None, self._rv)

    async def _custom_collection(self, request: web.Request) -> web.StreamResponse:
        resource = self._custom.get(request.match_info["plural"])
        if resource is None:
            raise web.HTTPNotFound
        return await collection(resource, request, request.match_info.get("namespace"), self._rv)
