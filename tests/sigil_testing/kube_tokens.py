"""Projected ServiceAccount tokens and their TokenReview, as kube-apiserver makes and judges them, for the stand-in.

Tokens are RS256 JWTs shaped like the ones the kubelet asks kube-apiserver for (``TokenRequest``), with ``iss``,
``aud``, ``exp``, ``nbf``, ``iat``, ``sub``, ``jti`` and the ``kubernetes.io`` claims
(https://kubernetes.io/docs/reference/access-authn-authz/service-accounts-admin/#bound-service-account-tokens).
A review follows ``pkg/serviceaccount/jwt.go`` and ``claims.go``: signature, issuer, audience intersection,
``exp``/``nbf``/``iat`` with go-jose's one-minute leeway, and (with lookup on) the bound pod still existing with the
same UID. Denials are ``authenticated: false`` plus the union authenticator's error text.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = ["TokenAuthority"]

_Obj = dict[str, Any]
# go-jose's jwt.DefaultLeeway, which kube-apiserver's claims validator relies on.
_LEEWAY = 60.0


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _go_quote_list(values: Iterable[str]) -> str:
    """A string slice as Go's ``%q`` prints it: ``["a" "b"]``."""
    return "[" + " ".join(json.dumps(v) for v in values) + "]"


def _denied(message: str) -> _Obj:
    # The union authenticator aggregates errors as "[a, b]"; the ServiceAccount authenticator's comes second.
    return {"authenticated": False, "error": f"[invalid bearer token, {message}]"}


class TokenAuthority:
    """The API server's ServiceAccount token signer and authenticator (one RSA key, one issuer)."""

    def __init__(self, issuer: str) -> None:
        self.issuer = issuer
        self.api_audiences = [issuer]
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        # kube-apiserver's key ID: base64url(SHA-256(DER SubjectPublicKeyInfo)), see keyIDFromPublicKey.
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.key_id = _b64url(hashlib.sha256(der).digest())
        self._service_accounts: dict[tuple[str, str], str] = {}

    def service_account_uid(self, namespace: str, name: str) -> str:
        return self._service_accounts.setdefault((namespace, name), str(uuid.uuid4()))

    def mint(
        self,
        pod: Mapping[str, Any],
        *,
        now: int,
        node_uid: str | None,
        audiences: Iterable[str],
        ttl: float,
        service_account: str | None,
        pod_uid: str | None,
        issuer: str | None,
        signing_key: rsa.RSAPrivateKey | None,
    ) -> str:
        """A token bound to ``pod`` (and its node, when ``node_uid`` is known), issued at ``now``."""
        meta, spec = pod["metadata"], pod["spec"]
        namespace = meta["namespace"]
        sa = service_account or spec["serviceAccountName"]
        claims: _Obj = {
            "aud": list(audiences),
            "exp": int(now + ttl),
            "iat": now,
            "iss": issuer or self.issuer,
            "jti": str(uuid.uuid4()),
            "kubernetes.io": {
                "namespace": namespace,
                "pod": {"name": meta["name"], "uid": pod_uid or meta["uid"]},
                "serviceaccount": {"name": sa, "uid": self.service_account_uid(namespace, sa)},
            },
            "nbf": now,
            "sub": f"system:serviceaccount:{namespace}:{sa}",
        }
        node_name = spec.get("nodeName")
        if node_name and node_uid is not None:
            claims["kubernetes.io"]["node"] = {"name": node_name, "uid": node_uid}
        # go-jose writes no "typ" header; kube-apiserver's tokens carry only alg and kid.
        return jwt.encode(
            claims,
            signing_key or self.key,
            algorithm="RS256",
            headers={"kid": self.key_id, "typ": None},
        )

    @staticmethod
    def bad_request(body: Any) -> str | None:
        """Why a TokenReview request body is refused with 400, as kube-apiserver words it, or None."""
        if not isinstance(body, dict):
            return "the request body is not an object"
        if body.get("kind", "TokenReview") != "TokenReview":
            return f"wrong kind {body.get('kind')!r}"
        if not (body.get("spec") or {}).get("token"):
            return "token is required for TokenReview in authentication"
        return None

    def review(
        self,
        token: str,
        requested: list[str],
        *,
        now: float,
        supports_audiences: bool,
        pod_uid_of: Callable[[str, str], str | None] | None,
    ) -> _Obj:
        """The TokenReview status; ``pod_uid_of(namespace, name)`` is the lookup (None: lookup is off)."""
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
                self.key.public_key(),
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
        targets = requested if requested and supports_audiences else self.api_audiences
        auds = [a for a in token_auds if a in targets]
        if not auds:
            return _denied(
                f"token audiences {_go_quote_list(token_auds)} is invalid for the target audiences "
                f"{_go_quote_list(targets)}"
            )
        if "exp" in claims and now - _LEEWAY > claims["exp"]:
            return _denied("service account token has expired")
        if "nbf" in claims and now + _LEEWAY < claims["nbf"]:
            return _denied("service account token is not valid yet")
        if "iat" in claims and now + _LEEWAY < claims["iat"]:
            return _denied("service account token is issued in the future")
        k8s = claims["kubernetes.io"]
        namespace, pod_ref = k8s["namespace"], k8s.get("pod")
        if (
            pod_uid_of is not None
            and pod_ref is not None
            and pod_uid_of(namespace, pod_ref["name"]) != pod_ref["uid"]
        ):
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
        if supports_audiences:
            status["audiences"] = auds
        return status
