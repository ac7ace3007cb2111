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

- ``POST /apis/authentication.k8s.io/v1/tokenreviews`` validates projected ServiceAccount tokens the way
  ``pkg/serviceaccount/jwt.go`` and ``claims.go`` do: signature, issuer, audience intersection, ``exp``/``nbf``/
  ``iat`` with go-jose's one-minute leeway against the stand-in's clock, and the bound pod still existing with the
  same UID (a deleted pod's token stops authenticating). Denials are ``authenticated: false`` plus error text.
- ``GET`` of pods (by name, by namespace, cluster-wide) and nodes, with ``fieldSelector``, ``labelSelector``,
  list ``resourceVersion`` and ``?watch=true`` streams of ``ADDED``/``MODIFIED``/``DELETED`` events, one JSON object
  per line, honouring ``resourceVersion`` and ``timeoutSeconds``.
  Filtered watches turn objects entering or leaving the selection into ``ADDED``/``DELETED`` as the watch cache does.
- Namespaces (with ``kubernetes.io/metadata.name``) and the ``authz.sigil.dev/v1alpha1`` policy resources, listed
  and watched like pods; the custom resources are stored without schema validation, as a server whose CRD is
  older than the client's schema would, so the client's own refusals can be tested.
- Errors are ``Status`` objects; requests need the stand-in's own bearer token, as the real server would.

Tokens are RS256 JWTs shaped like the ones the kubelet asks kube-apiserver for (``TokenRequest``), with ``iss``,
``aud``, ``exp``, ``nbf``, ``iat``, ``sub``, ``jti`` and the ``kubernetes.io`` claims
(https://kubernetes.io/docs/reference/access-authn-authz/service-accounts-admin/#bound-service-account-tokens).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import re
import secrets
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = ["DEFAULT_ISSUER", "KubeApiServer"]

DEFAULT_ISSUER = "https://kubernetes.default.svc.cluster.local"
# go-jose's jwt.DefaultLeeway, which kube-apiserver's claims validator relies on.
_LEEWAY = 60.0
_Obj = dict[str, Any]
_CUSTOM_GROUP = "authz.sigil.dev/v1alpha1"
_CUSTOM_KINDS = {
    "AuthorizationPolicy": "authorizationpolicies",
    "ClusterAuthorizationPolicy": "clusterauthorizationpolicies",
}


def _status(code: int, reason: str, message: str, details: _Obj | None = None) -> web.Response:
    body: _Obj = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details is not None:
        body["details"] = details
    return web.json_response(body, status=code)


def _go_quote_list(values: Iterable[str]) -> str:
    """A string slice as Go's ``%q`` prints it: ``["a" "b"]``."""
    return "[" + " ".join(json.dumps(v) for v in values) + "]"


# ----------------------------------------------------------------------------------------- selectors
_REQ = re.compile(
    r"\s*(!?)([A-Za-z0-9._/-]+)\s*(?:(==|!=|=|notin(?=\s*\()|in(?=\s*\())\s*(\([^)]*\)|[^,]*))?\s*"
)


def _label_matcher(selector: str) -> Callable[[Mapping[str, str]], bool]:
    """Parse a label selector (equality and set-based, k8s.io/apimachinery/pkg/labels) into a predicate."""
    tests: list[Callable[[Mapping[str, str]], bool]] = []
    pos = 0
    while pos < len(selector):
        match = _REQ.match(selector, pos)
        if match is None or match.end() == pos:
            raise ValueError(f"unable to parse requirement: {selector[pos:]!r}")
        neg, key, op, raw = match.groups()
        op = (op or "").strip()
        values = {v.strip() for v in (raw or "").strip("()").split(",") if v.strip()}
        if not op:
            tests.append(
                (lambda k: lambda lb: k not in lb)(key)
                if neg
                else (lambda k: lambda lb: k in lb)(key)
            )
        elif op in ("=", "==", "in"):
            tests.append((lambda k, vs: lambda lb: lb.get(k) in vs)(key, values))
        else:
            tests.append((lambda k, vs: lambda lb: lb.get(k) not in vs)(key, values))
        pos = match.end()
        if pos < len(selector) and selector[pos] == ",":
            pos += 1
    return lambda labels: all(test(labels) for test in tests)


_POD_FIELDS: dict[str, Callable[[_Obj], str]] = {
    "metadata.name": lambda o: o["metadata"]["name"],
    "metadata.namespace": lambda o: o["metadata"]["namespace"],
    "spec.nodeName": lambda o: o["spec"].get("nodeName", ""),
    "spec.serviceAccountName": lambda o: o["spec"].get("serviceAccountName", ""),
    "status.phase": lambda o: o["status"].get("phase", ""),
    "status.podIP": lambda o: o["status"].get("podIP", ""),
}
_NODE_FIELDS: dict[str, Callable[[_Obj], str]] = {
    "metadata.name": lambda o: o["metadata"]["name"],
    "spec.unschedulable": lambda o: str(o["spec"].get("unschedulable", False)).lower(),
}


def _field_matcher(
    selector: str, fields: Mapping[str, Callable[[_Obj], str]]
) -> Callable[[_Obj], bool]:
    tests: list[Callable[[_Obj], bool]] = []
    for term in filter(None, (t.strip() for t in selector.split(","))):
        name, op, value = re.split(r"(!=|==|=)", term, maxsplit=1)
        if name not in fields:
            raise ValueError(f"field label not supported: {name}")
        get = fields[name]
        if op == "!=":
            tests.append((lambda g, v: lambda o: g(o) != v)(get, value))
        else:
            tests.append((lambda g, v: lambda o: g(o) == v)(get, value))
    return lambda obj: all(test(obj) for test in tests)


# ----------------------------------------------------------------------------------------- storage
@dataclass(frozen=True, slots=True)
class _Event:
    rv: int
    type: str
    obj: _Obj
    old: _Obj | None


@dataclass(slots=True, eq=False)  # identity, so a set can hold the open watches
class _Watcher:
    namespace: str | None
    matches: Callable[[_Obj], bool]
    queue: asyncio.Queue[_Event | None] = field(default_factory=asyncio.Queue)

    def translate(self, event: _Event) -> _Obj | None:
        """The event as this watcher sees it: entering or leaving its selection is ADDED or DELETED."""

        def visible(obj: _Obj | None) -> bool:
            if obj is None:
                return False
            ns_ok = self.namespace is None or obj["metadata"].get("namespace") == self.namespace
            return ns_ok and self.matches(obj)

        was, now = visible(event.old), visible(event.obj) and event.type != "DELETED"
        if event.type == "DELETED":
            kind = "DELETED" if was else None
        elif was and now:
            kind = "MODIFIED"
        elif now:
            kind = "ADDED"
        elif was:
            kind = "DELETED"
        else:
            kind = None
        return None if kind is None else {"type": kind, "object": event.obj}


@dataclass(slots=True)
class _Resource:
    kind: str
    plural: str
    fields: Mapping[str, Callable[[_Obj], str]]
    objects: dict[tuple[str, str], _Obj] = field(default_factory=dict)
    history: deque[_Event] = field(default_factory=lambda: deque(maxlen=10_000))
    watchers: set[_Watcher] = field(default_factory=set)


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


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
        self.issuer = issuer
        self.api_audiences = [issuer]
        self.service_account_lookup = service_account_lookup
        self.supports_audiences = supports_audiences
        self.client_token = secrets.token_urlsafe(32)
        self.token_reviews = 0
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        # kube-apiserver's key ID: base64url(SHA-256(DER SubjectPublicKeyInfo)), see keyIDFromPublicKey.
        der = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.key_id = _b64url(hashlib.sha256(der).digest())
        self._rv = 1
        self._pods = _Resource("Pod", "pods", _POD_FIELDS)
        self._nodes = _Resource("Node", "nodes", _NODE_FIELDS)
        self._namespaces = _Resource("Namespace", "namespaces", {})
        # Custom resources by plural; the stand-in applies no CRD schema, like a server whose CRD is older.
        self._custom: dict[str, _Resource] = {
            plural: _Resource(kind, plural, {}) for kind, plural in _CUSTOM_KINDS.items()
        }
        self._service_accounts: dict[tuple[str, str], str] = {}
        self._runner: web.AppRunner | None = None
        self._port = 0

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
        for resource in self._all_resources():
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

    def _all_resources(self) -> list[_Resource]:
        return [self._pods, self._nodes, self._namespaces, *self._custom.values()]

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
    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def _record(self, resource: _Resource, kind: str, obj: _Obj, old: _Obj | None) -> str:
        rv = self._next_rv()
        obj = json.loads(json.dumps(obj))
        obj["metadata"]["resourceVersion"] = str(rv)
        key = (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        if kind == "DELETED":
            del resource.objects[key]
        else:
            resource.objects[key] = obj
        event = _Event(rv, kind, obj, old)
        resource.history.append(event)
        for watcher in resource.watchers:
            watcher.queue.put_nowait(event)
        return str(rv)

    def add_node(
        self, name: str, *, uid: str | None = None, labels: Mapping[str, str] | None = None
    ) -> _Obj:
        """Register a node (as the kubelet does) and return it."""
        node: _Obj = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "uid": uid or str(uuid.uuid4()),
                "creationTimestamp": _rfc3339(self.clock()),
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    **(labels or {}),
                },
            },
            "spec": {"podCIDR": "10.244.0.0/24"},
            "status": {
                "addresses": [{"type": "Hostname", "address": name}],
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
                "nodeInfo": {
                    "architecture": "amd64",
                    "bootID": str(uuid.uuid4()),
                    "containerRuntimeVersion": "containerd://2.0.0",
                    "kernelVersion": "6.8.0",
                    "kubeProxyVersion": "v1.33.0",
                    "kubeletVersion": "v1.33.0",
                    "machineID": uuid.uuid4().hex,
                    "operatingSystem": "linux",
                    "osImage": "Debian GNU/Linux 12 (bookworm)",
                    "systemUUID": str(uuid.uuid4()),
                },
            },
        }
        self._record(self._nodes, "ADDED", node, None)
        return json.loads(json.dumps(self._nodes.objects[("", name)]))  # type: ignore[no-any-return]

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
    ) -> _Obj:
        """Create a pod, bound to ``node_name`` (or pending when None), and return it."""
        if (namespace, name) in self._pods.objects:
            raise ValueError(f'pods "{name}" already exists')
        self._service_account_uid(namespace, service_account)
        pod: _Obj = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": uid or str(uuid.uuid4()),
                "creationTimestamp": _rfc3339(self.clock()),
                "labels": dict(labels or {}),
            },
            "spec": {
                "containers": [{"name": "main", "image": "registry.example/app:1"}],
                "serviceAccountName": service_account,
                "serviceAccount": service_account,
                "restartPolicy": "Always",
            },
            "status": {"phase": phase if node_name else "Pending"},
        }
        if node_name:
            pod["spec"]["nodeName"] = node_name
            pod["status"]["hostIP"] = "192.0.2.10"
            pod["status"]["podIP"] = f"10.244.0.{len(self._pods.objects) % 250 + 2}"
        self._record(self._pods, "ADDED", pod, None)
        return self.pod(namespace, name)

    def remove_pod(self, namespace: str, name: str) -> None:
        """Delete a pod; tokens bound to it stop authenticating."""
        old = self._pods.objects[(namespace, name)]
        self._record(self._pods, "DELETED", old, old)

    def pod(self, namespace: str, name: str) -> _Obj:
        return json.loads(json.dumps(self._pods.objects[(namespace, name)]))  # type: ignore[no-any-return]

    # ------------------------------------------------------------------------------------- namespaces, CRs
    def add_namespace(self, name: str, *, labels: Mapping[str, str] | None = None) -> None:
        """Create or relabel a namespace; it carries ``kubernetes.io/metadata.name`` as the API server sets it."""
        old = self._namespaces.objects.get(("", name))
        namespace: _Obj = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": name,
                "uid": old["metadata"]["uid"] if old else str(uuid.uuid4()),
                "labels": {"kubernetes.io/metadata.name": name, **(labels or {})},
            },
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        }
        self._record(self._namespaces, "MODIFIED" if old else "ADDED", namespace, old)

    def apply_custom(self, obj: Mapping[str, Any]) -> None:
        """Create or replace an ``authz.sigil.dev`` resource (as ``kubectl apply`` would, without validation)."""
        new: _Obj = json.loads(json.dumps(obj))
        resource = self._custom[_CUSTOM_KINDS[new["kind"]]]
        meta = new["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        old = resource.objects.get(key)
        meta["uid"] = old["metadata"]["uid"] if old else str(uuid.uuid4())
        meta["generation"] = old["metadata"].get("generation", 1) + 1 if old else 1
        self._record(resource, "MODIFIED" if old else "ADDED", new, old)

    def _service_account_uid(self, namespace: str, name: str) -> str:
        return self._service_accounts.setdefault((namespace, name), str(uuid.uuid4()))

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
        meta, spec = pod["metadata"], pod["spec"]
        namespace = meta["namespace"]
        sa = service_account or spec["serviceAccountName"]
        now = int(self.clock() + not_before)
        node_name = spec.get("nodeName")
        claims: _Obj = {
            "aud": list(audiences),
            "exp": int(now + ttl),
            "iat": now,
            "iss": issuer or self.issuer,
            "jti": str(uuid.uuid4()),
            "kubernetes.io": {
                "namespace": namespace,
                "pod": {"name": meta["name"], "uid": pod_uid or meta["uid"]},
                "serviceaccount": {"name": sa, "uid": self._service_account_uid(namespace, sa)},
            },
            "nbf": now,
            "sub": f"system:serviceaccount:{namespace}:{sa}",
        }
        if node_name and ("", node_name) in self._nodes.objects:
            node_uid = self._nodes.objects[("", node_name)]["metadata"]["uid"]
            claims["kubernetes.io"]["node"] = {"name": node_name, "uid": node_uid}
        # go-jose writes no "typ" header; kube-apiserver's tokens carry only alg and kid.
        return jwt.encode(
            claims,
            signing_key or self._key,
            algorithm="RS256",
            headers={"kid": self.key_id, "typ": None},
        )

    def _review(self, token: str, requested: list[str]) -> _Obj:
        """The TokenReview status kube-apiserver's ServiceAccount authenticator would produce."""
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.DecodeError:
            return {
                "authenticated": False
            }  # not a JWT: no authenticator claims it, and none errors
        if unverified.get("iss") != self.issuer:
            return {"authenticated": False}  # another issuer's JWT: not ours to judge
        try:
            claims = jwt.decode(
                token,
                self._key.public_key(),
                algorithms=["RS256"],
                options={
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": False,
                },
            )
        except jwt.InvalidTokenError:
            return _denied("square/go-jose: error in cryptographic primitive")
        token_auds = claims.get("aud") or self.api_audiences
        token_auds = [token_auds] if isinstance(token_auds, str) else list(token_auds)
        targets = requested if requested and self.supports_audiences else self.api_audiences
        auds = [a for a in token_auds if a in targets]
        if not auds:
            return _denied(
                f"token audiences {_go_quote_list(token_auds)} is invalid for the target audiences "
                f"{_go_quote_list(targets)}"
            )
        now = self.clock()
        if "exp" in claims and now - _LEEWAY > claims["exp"]:
            return _denied("service account token has expired")
        if "nbf" in claims and now + _LEEWAY < claims["nbf"]:
            return _denied("service account token is not valid yet")
        if "iat" in claims and now + _LEEWAY < claims["iat"]:
            return _denied("service account token is issued in the future")
        k8s = claims["kubernetes.io"]
        namespace, pod_ref = k8s["namespace"], k8s.get("pod")
        if self.service_account_lookup and pod_ref is not None:
            live = self._pods.objects.get((namespace, pod_ref["name"]))
            if live is None or live["metadata"]["uid"] != pod_ref["uid"]:
                return _denied("service account token has been invalidated")
        extra: dict[str, list[str]] = {
            "authentication.kubernetes.io/credential-id": [f"JTI={claims['jti']}"]
        }
        if pod_ref is not None:
            extra["authentication.kubernetes.io/pod-name"] = [pod_ref["name"]]
            extra["authentication.kubernetes.io/pod-uid"] = [pod_ref["uid"]]
        if "node" in k8s:
            extra["authentication.kubernetes.io/node-name"] = [k8s["node"]["name"]]
            extra["authentication.kubernetes.io/node-uid"] = [k8s["node"]["uid"]]
        status: _Obj = {
            "authenticated": True,
            "user": {
                "username": claims["sub"],
                "uid": k8s["serviceaccount"]["uid"],
                "groups": [
                    "system:serviceaccounts",
                    f"system:serviceaccounts:{namespace}",
                    "system:authenticated",
                ],
                "extra": extra,
            },
        }
        if self.supports_audiences:
            status["audiences"] = auds
        return status

    # ------------------------------------------------------------------------------------- handlers
    @web.middleware
    async def _auth_middleware(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {self.client_token}":
            return _status(401, "Unauthorized", "Unauthorized")
        try:
            response: web.StreamResponse = await handler(request)
        except web.HTTPNotFound:
            return _status(404, "NotFound", "the server could not find the requested resource")
        return response

    async def _token_review(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return _status(400, "BadRequest", "the request body is not JSON")
        if body.get("kind", "TokenReview") != "TokenReview":
            return _status(400, "BadRequest", f"wrong kind {body.get('kind')!r}")
        spec = body.get("spec") or {}
        token = spec.get("token") or ""
        if not token:
            return _status(400, "BadRequest", "token is required for TokenReview in authentication")
        self.token_reviews += 1
        answer = {
            "kind": "TokenReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": None},
            "spec": spec,
            "status": self._review(token, list(spec.get("audiences") or [])),
        }
        return web.json_response(answer, status=201)

    def _get(self, resource: _Resource, namespace: str, name: str) -> web.Response:
        obj = resource.objects.get((namespace, name))
        if obj is None:
            return _status(
                404,
                "NotFound",
                f'{resource.plural} "{name}" not found',
                {"name": name, "kind": resource.plural},
            )
        return web.json_response(obj)

    async def _pod_get(self, request: web.Request) -> web.Response:
        return self._get(self._pods, request.match_info["namespace"], request.match_info["name"])

    async def _node_get(self, request: web.Request) -> web.Response:
        return self._get(self._nodes, "", request.match_info["name"])

    async def _pods_collection(self, request: web.Request) -> web.StreamResponse:
        return await self._collection(self._pods, request, request.match_info.get("namespace"))

    async def _nodes_collection(self, request: web.Request) -> web.StreamResponse:
        return await self._collection(self._nodes, request, None)

    async def _namespaces_collection(self, request: web.Request) -> web.StreamResponse:
        return await self._collection(self._namespaces, request, None)

    async def _custom_collection(self, request: web.Request) -> web.StreamResponse:
        resource = self._custom.get(request.match_info["plural"])
        if resource is None:
            raise web.HTTPNotFound
        return await self._collection(resource, request, request.match_info.get("namespace"))

    async def _collection(
        self, resource: _Resource, request: web.Request, namespace: str | None
    ) -> web.StreamResponse:
        query = request.query
        try:
            labels = _label_matcher(query.get("labelSelector", ""))
            fields = _field_matcher(query.get("fieldSelector", ""), resource.fields)
        except ValueError as err:
            return _status(400, "BadRequest", str(err))
        watcher = _Watcher(
            namespace, lambda o: labels(o["metadata"].get("labels") or {}) and fields(o)
        )
        if query.get("watch") in ("true", "1"):
            return await self._watch(resource, request, watcher)
        items = []
        for obj in resource.objects.values():
            if watcher.translate(_Event(0, "ADDED", obj, None)) is not None:
                item = dict(obj)
                # List items carry no kind/apiVersion on the wire; the list does.
                item.pop("kind", None)
                item.pop("apiVersion", None)
                items.append(item)
        return web.json_response(
            {
                "kind": f"{resource.kind}List",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": str(self._rv)},
                "items": items,
            }
        )

    async def _watch(
        self, resource: _Resource, request: web.Request, watcher: _Watcher
    ) -> web.StreamResponse:
        rv_param = request.query.get("resourceVersion", "")
        timeout = float(request.query.get("timeoutSeconds", "1800"))
        backlog: list[_Event] = []
        if rv_param in ("", "0"):
            # "Get State and Start at Most Recent": synthetic ADDED events for what exists now.
            backlog = [_Event(0, "ADDED", obj, None) for obj in resource.objects.values()]
        else:
            backlog = [e for e in resource.history if e.rv > int(rv_param)]
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for past in backlog:
            watcher.queue.put_nowait(past)
        resource.watchers.add(watcher)
        try:
            async with asyncio.timeout(timeout):
                while (event := await watcher.queue.get()) is not None:
                    line = watcher.translate(event)
                    if line is not None:
                        await response.write(json.dumps(line).encode() + b"\n")
        except TimeoutError:
            pass  # timeoutSeconds ran out: the server ends the stream cleanly
        finally:
            resource.watchers.discard(watcher)
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response


def _denied(message: str) -> _Obj:
    # The union authenticator aggregates errors as "[a, b]"; the ServiceAccount authenticator's comes second.
    return {"authenticated": False, "error": f"[invalid bearer token, {message}]"}
