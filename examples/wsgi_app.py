"""A plain WSGI backend over TextStack: one shared client, no framework.

Run it with several pre-forked workers::

    gunicorn -w 4 --preload examples.wsgi_app:app

``--preload`` imports this module (and builds the client) once in the master, then forks
the workers; the SDK is fork-safe: each worker gets its own connection pool and token
state, and all of them share one token cache file, refreshing it one at a time.

Sign in once, as the user the service runs as, before starting it::

    sudo -u textstack-service textstack login

The settings come from the environment (``TEXTSTACK_API_URL``, ``TEXTSTACK_SITE_HOST``,
``TEXTSTACK_MCP_TOKEN_CACHE``, or ``TEXTSTACK_MCP_TOKEN`` for a fixed token).

Routes (GET only, JSON answers):

* ``/healthz``: the process is up (touches neither the API nor the tokens).
* ``/search?q=Ishmael``: the public catalog search.
* ``/books``: the signed-in user's uploaded books.

No request ever waits for a person. Without a usable sign-in, ``/books`` answers 503 at
once with the sign-in message (also printed to the service log); the operator approves
the code (or runs ``textstack login``) and the next request succeeds. That message
carries the sign-in code, so serve this only to trusted clients. API and network
failures answer 502.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Iterable
from typing import Any, Callable
from urllib.parse import parse_qs

from textstack_sdk import (
    ApiError,
    AuthorizationRequired,
    InvalidArgument,
    TextStackApiClient,
    TransportError,
)

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


class HttpError(Exception):
    """An answer other than 200, raised by a route."""

    def __init__(self, status: int, payload: dict[str, Any]) -> None:
        super().__init__(payload.get("message", ""))
        self.status = status
        self.payload = payload


def _to_json(value: object) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _respond(
    start_response: StartResponse, status: int, payload: object, extra: list[tuple[str, str]]
) -> list[bytes]:
    body = json.dumps(payload, default=_to_json, ensure_ascii=False).encode("utf-8")
    headers = [
        ("Content-Type", "application/json; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
        *extra,
    ]
    start_response(f"{status} {_REASONS.get(status, 'Error')}", headers)
    return [body]


def create_app(client: TextStackApiClient) -> WsgiApp:
    """A WSGI application answering from ``client`` (shared by all requests and threads)."""

    def books(query: dict[str, list[str]]) -> object:
        return {"books": client.list_my_books()}

    def search(query: dict[str, list[str]]) -> object:
        text = query.get("q", [""])[0].strip()
        if not text:
            raise HttpError(400, {"error": "bad_request", "message": "add ?q=<words>"})
        return client.search_books(text, limit=20)

    def healthz(query: dict[str, list[str]]) -> object:
        return {"status": "ok"}

    routes: dict[str, Callable[[dict[str, list[str]]], object]] = {
        "/books": books,
        "/search": search,
        "/healthz": healthz,
    }

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        route = routes.get(environ.get("PATH_INFO") or "/")
        extra: list[tuple[str, str]] = []
        try:
            if route is None:
                raise HttpError(404, {"error": "not_found", "message": "no such page"})
            if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
                extra.append(("Allow", "GET, HEAD"))
                raise HttpError(405, {"error": "method_not_allowed", "message": "GET only"})
            payload = route(parse_qs(environ.get("QUERY_STRING", "")))
            return _respond(start_response, 200, payload, extra)
        except HttpError as exc:
            return _respond(start_response, exc.status, exc.payload, extra)
        except AuthorizationRequired as exc:
            # No token: nothing was sent to TextStack. Answer now; never wait for a person.
            body = {
                "error": "sign_in_required",
                "message": str(exc),
                "verification_uri": exc.verification_uri,
                "user_code": exc.user_code,
            }
            return _respond(start_response, 503, body, [("Retry-After", "10")])
        except InvalidArgument as exc:
            return _respond(start_response, 400, {"error": "bad_request", "message": str(exc)}, [])
        except (ApiError, TransportError) as exc:
            return _respond(start_response, 502, {"error": "upstream", "message": str(exc)}, [])

    return app


# Built at import time, once: with ``gunicorn --preload`` the master builds it and every
# forked worker inherits it.
client = TextStackApiClient.from_env()
app = create_app(client)
