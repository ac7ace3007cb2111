"""The HTTP edge: every refusal leaves as RFC 9457 ``application/problem+json`` with its stable ``reason``.

Handlers raise the issuer's errors; this middleware is the one place that turns them into responses, through the one
table in :mod:`sigil.issuer.errors`. A failed database answers 503 ``datastore_unavailable`` with no detail; any other
error that is not a refusal answers ``internal_error``, logged with its traceback here.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

import structlog
from aiohttp import web

from sigil.ca.errors import KeyStoreError, SigilError
from sigil.issuer.agentapi import contract
from sigil.issuer.errors import (
    BodyTooLargeError,
    IssuerError,
    MalformedRequestError,
    NotFoundError,
    RateLimitedError,
    problem_for,
)
from sigil.issuer.metrics import IssuerMetrics

__all__ = ["problem_body", "problem_middleware", "read_json"]

_log = structlog.get_logger(__name__)
#: The charsets aiohttp decodes a body with that refuse surrogates (Python's UTF-8 codec is strict).
_STRICT_UTF8 = frozenset({"utf-8", "utf8"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def problem_body(error: SigilError) -> contract.ProblemBody:
    reason, problem = problem_for(error)
    if isinstance(error, IssuerError):
        detail = error.detail
    elif isinstance(error, KeyStoreError):
        # It names the key file and what the system said (never the key): what the operator must fix.
        detail = str(error)
    else:
        detail = problem.title
    return {
        "type": f"https://sigil.dev/problems/{reason}",
        "title": problem.title,
        "status": int(problem.status),
        "detail": detail,
        "reason": reason,
    }


def _response(error: SigilError, metrics: IssuerMetrics) -> web.Response:
    body = problem_body(error)
    metrics.refusals.labels(body["reason"]).inc()
    headers = {}
    if isinstance(error, RateLimitedError):
        headers["Retry-After"] = str(max(1, round(error.retry_after)))
    return web.Response(
        status=body["status"],
        text=json.dumps(body),
        content_type=contract.PROBLEM_CONTENT_TYPE,
        headers=headers,
    )


def problem_middleware(metrics: IssuerMetrics, *, max_size: int) -> Any:
    """The middleware answering refusals as problem documents, counting them by reason."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except IssuerError as err:
            if err.status >= HTTPStatus.INTERNAL_SERVER_ERROR:
                _log.warning(
                    "request.failed", path=request.path, reason=err.reason, detail=err.detail
                )
            else:
                _log.info(
                    "request.refused", path=request.path, reason=err.reason, detail=err.detail
                )
            return _response(err, metrics)
        except SigilError as err:
            reason, _ = problem_for(err)
            if reason == "internal_error":
                _log.exception("request.error", path=request.path)
            else:
                # The CA's errors with a reason of their own (a failed database): the client sees only the title.
                _log.warning("request.failed", path=request.path, reason=reason, detail=str(err))
            return _response(err, metrics)
        except web.HTTPRequestEntityTooLarge:
            return _response(BodyTooLargeError(max_size), metrics)
        except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
            return _response(NotFoundError(f"{request.method} {request.path}"), metrics)

    return middleware


async def read_json(request: web.Request) -> dict[str, Any]:
    """The request's JSON object of valid Unicode, or :class:`MalformedRequestError` (413 comes from
    ``client_max_size``)."""
    try:
        text = await request.text()
        document = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise MalformedRequestError("the body is not JSON") from err
    except RecursionError as err:
        # Thousands of nested brackets, well under client_max_size (found by fuzzing).
        raise MalformedRequestError("the body is nested too deeply") from err
    except ConnectionResetError as err:
        # The caller left in the middle of its body (a client timeout under load, found by bench/soak.py): its
        # refusal, not a traceback in the server's log; nobody is left to read the answer.
        raise MalformedRequestError("the body was cut short: the connection was lost") from err
    if not isinstance(document, dict):
        raise MalformedRequestError("the body is not a JSON object")
    if "\\u" not in text and (request.charset or "utf-8").lower() in _STRICT_UTF8:
        # A surrogate can then only come from a \u escape: strict UTF-8 decoding refuses encoded ones (another
        # charset a client names may not). Re-encoding a batch's hundred CSRs to look cost a few per cent of the
        # server's time per SVID.
        return document
    try:
        # JSON may escape half a surrogate pair ("\ud800"), which no str can encode again: a CSR or token holding
        # one failed deep in a handler as UnicodeEncodeError, a 500 (found by fuzzing). Refused here, once.
        json.dumps(document, ensure_ascii=False).encode()
    except UnicodeEncodeError as err:
        raise MalformedRequestError("the body holds a lone surrogate (\\uD800-\\uDFFF)") from err
    return document
