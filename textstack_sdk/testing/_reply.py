"""Values passed between the fake server's HTTP layer and its route handlers. Pure."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping, Optional, Sequence

__all__ = [
    "JSON_TYPE",
    "Call",
    "FieldProblem",
    "Problem",
    "Reply",
    "int_arg",
    "iso",
    "json_object",
    "json_reply",
    "not_found",
    "optional_text",
    "require_text",
    "validation",
]

JSON_TYPE = "application/json; charset=utf-8"


@dataclass(frozen=True)
class Reply:
    """One HTTP answer, before any fault shapes its delivery. Immutable."""

    status: int
    body: bytes = b""
    content_type: Optional[str] = JSON_TYPE
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Call:
    """One parsed request as a handler sees it. Immutable."""

    method: str
    path: str
    params: Mapping[str, str]
    query: Mapping[str, str]
    body: Any = None
    user_id: Optional[str] = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def arg(self, name: str) -> Optional[str]:
        """A query parameter, None when absent or empty (the client omits unset ones)."""
        value = self.query.get(name)
        return value if value else None


@dataclass(frozen=True)
class FieldProblem:
    """One entry of a validation refusal's ``errors`` list. Immutable."""

    path: str
    code: str
    message: str


class Problem(Exception):
    """A handler's refusal: becomes a JSON error answer. Not shared between threads."""

    def __init__(
        self,
        status: int,
        error: str,
        message: Optional[str] = None,
        *,
        errors: Sequence[FieldProblem] = (),
        headers: tuple[tuple[str, str], ...] = (),
        bare: bool = False,
    ) -> None:
        super().__init__(f"{status} {error}")
        self.status = status
        self.error = error
        self.message = message
        self.errors = tuple(errors)
        self.headers = headers
        self.bare = bare

    def reply(self) -> Reply:
        """The JSON answer (or an empty body for bare refusals, as ASP.NET's JwtBearer)."""
        if self.bare:
            return Reply(self.status, b"", None, self.headers)
        payload: dict[str, Any] = {"error": self.error}
        if self.message is not None:
            payload["message"] = self.message
        if self.errors:
            payload["errors"] = [
                {"path": e.path, "code": e.code, "message": e.message} for e in self.errors
            ]
        return json_reply(payload, self.status, headers=self.headers)


def json_reply(
    payload: Any, status: int = 200, *, headers: tuple[tuple[str, str], ...] = ()
) -> Reply:
    """Serialises payload compactly as UTF-8 JSON."""
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Reply(status, body, JSON_TYPE, headers)


def not_found(what: str) -> Problem:
    """The 404 the server gives for unknown ids and for other people's data alike."""
    return Problem(404, "not_found", f"{what} was not found.")


def validation(*errors: FieldProblem) -> Problem:
    """A 400 refusal listing each offending field; the message names the first one."""
    first = errors[0].message if errors else "The request is invalid."
    return Problem(400, "validation_failed", first, errors=errors)


def iso(timestamp: float) -> str:
    """ISO 8601 with an explicit UTC offset, as the server writes timestamps."""
    moment = datetime.fromtimestamp(timestamp, timezone.utc)
    return moment.isoformat(timespec="milliseconds")


def require_text(body: Mapping[str, Any], name: str, *, max_length: int = 20_000) -> str:
    """Reads a required non-blank string field or raises a validation Problem."""
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise validation(FieldProblem(name, "required", f"'{name}' must not be empty."))
    if len(value) > max_length:
        raise validation(
            FieldProblem(name, "max_length", f"'{name}' must be at most {max_length} characters.")
        )
    return value


def optional_text(body: Mapping[str, Any], name: str, *, max_length: int = 20_000) -> Optional[str]:
    """Reads an optional string field (null or absent gives None)."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise validation(FieldProblem(name, "type", f"'{name}' must be a string."))
    if len(value) > max_length:
        raise validation(
            FieldProblem(name, "max_length", f"'{name}' must be at most {max_length} characters.")
        )
    return value


def json_object(body: Any) -> dict[str, Any]:
    """The body as a JSON object, or a 400 naming the problem."""
    if not isinstance(body, dict):
        raise validation(FieldProblem("$", "type", "The request body must be a JSON object."))
    return body


def int_arg(call: Call, name: str, *, default: int, low: int, high: int) -> int:
    """An integer query parameter within [low, high]; a 400 when it is not one."""
    raw = call.arg(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise validation(FieldProblem(name, "type", f"'{name}' must be an integer.")) from None
    if not low <= value <= high:
        raise validation(FieldProblem(name, "range", f"'{name}' must be between {low} and {high}."))
    return value
