"""Classifiers of auth answers: every hostile answer becomes a value, never an exception."""

import json
from typing import Optional

import pytest

from textstack_sdk._errors import ProtocolError
from textstack_sdk._http import Response
from textstack_sdk._models import TokenSet
from textstack_sdk._wire import (
    Granted,
    PollError,
    RefreshDead,
    Refreshed,
    Transient,
    classify_device_token,
    classify_refresh,
    parse_device_authorization,
)

GOOD_CODE = {
    "device_code": "dev-123",
    "user_code": "WDJB-MQXR",
    "verification_uri": "https://textstack.app/device",
    "verification_uri_complete": "https://textstack.app/device?code=WDJB-MQXR",
    "expires_in": 600,
    "interval": 5,
}
OLD = TokenSet("old.access.token", "old-refresh", None)


def resp(status: int, body: object, headers: Optional[dict] = None) -> Response:  # type: ignore[assignment]
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Response(status, headers or {}, raw)


def test_device_code_happy() -> None:
    auth = parse_device_authorization(resp(200, GOOD_CODE))
    assert auth.user_code == "WDJB-MQXR"
    assert auth.interval == 5.0
    assert "dev-123" not in repr(auth)


@pytest.mark.parametrize("interval", [None, "x", True, -1, float("nan"), [5]])
def test_missing_or_bad_interval_means_five(interval: object) -> None:
    body = dict(GOOD_CODE)
    if interval is None:
        del body["interval"]
    else:
        body["interval"] = interval
    raw = json.dumps(body).replace("NaN", "NaN").encode()
    assert parse_device_authorization(resp(200, raw)).interval == 5.0


def test_interval_zero_means_the_rfc_floor_not_the_default() -> None:
    assert parse_device_authorization(resp(200, dict(GOOD_CODE, interval=0))).interval == 1.0


def test_huge_interval_and_lifetime_are_capped() -> None:
    body = dict(GOOD_CODE, interval=10**9, expires_in=10**12)
    auth = parse_device_authorization(resp(200, body))
    assert auth.interval <= 300
    assert auth.expires_in <= 1800


@pytest.mark.parametrize(
    "body",
    [
        b"<html>502 Bad Gateway</html>",
        b"",
        b"[" * 50000,
        b"\xff\xfe",
        [],
        None,
        "x",
        dict(GOOD_CODE, device_code=""),
        dict(GOOD_CODE, device_code=None),
        dict(GOOD_CODE, device_code="has space"),
        dict(GOOD_CODE, user_code=""),
        dict(GOOD_CODE, verification_uri="javascript:alert(1)"),
        dict(GOOD_CODE, expires_in=None),
        dict(GOOD_CODE, expires_in=-3),
    ],
)
def test_device_code_bad_answers_are_protocol_errors(body: object) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_device_authorization(resp(200, body))
    assert "dev-123" not in str(info.value)


def test_bad_complete_uri_is_dropped() -> None:
    body = dict(GOOD_CODE, verification_uri_complete="\x1b[31mhttps://evil")
    assert parse_device_authorization(resp(200, body)).verification_uri_complete is None


def test_poll_granted() -> None:
    out = classify_device_token(
        resp(200, {"access_token": "a.b.c", "refresh_token": "r1", "token_type": "bearer"}), 0
    )
    assert isinstance(out, Granted)
    assert out.tokens.refresh_token == "r1"


@pytest.mark.parametrize(
    "body",
    [
        {"refresh_token": "r1", "token_type": "Bearer"},
        {"access_token": "", "token_type": "Bearer"},
        {"access_token": "a b", "token_type": "Bearer"},
        {"access_token": "abc", "token_type": "mac"},
        {"access_token": "abc"},
        {"access_token": "abc", "refresh_token": "bad token", "token_type": "Bearer"},
        [],
        b"<html>oops</html>",
    ],
)
def test_poll_bad_grant_is_terminal(body: object) -> None:
    assert classify_device_token(resp(200, body), 0) == PollError("invalid_token_response")


@pytest.mark.parametrize(
    "code", ["authorization_pending", "slow_down", "access_denied", "expired_token", "whatever"]
)
def test_poll_errors(code: str) -> None:
    assert classify_device_token(resp(400, {"error": code}), 0) == PollError(code)


def test_poll_error_code_is_sanitised() -> None:
    out = classify_device_token(resp(400, {"error": "\x1b[2Jbad\ncode"}), 0)
    assert out == PollError("[2Jbadcode")


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, {}),
        (502, b"<html>bad gateway</html>"),
        (503, b""),
        (429, {}),
        (400, b"<html/>"),
        (400, {"no": "error"}),
    ],
)
def test_poll_transient(status: int, body: object) -> None:
    assert isinstance(classify_device_token(resp(status, body), 0), Transient)


def test_poll_429_retry_after() -> None:
    out = classify_device_token(resp(429, {}, {"retry-after": "17"}), 0)
    assert out == Transient("the token endpoint answered HTTP 429", 17.0)


def test_poll_unknown_status_is_terminal() -> None:
    assert classify_device_token(resp(403, {}), 0) == PollError("http_403")


def test_refresh_rotates() -> None:
    out = classify_refresh(resp(200, {"accessToken": "n.e.w", "refreshToken": "r2"}), OLD, 0)
    assert isinstance(out, Refreshed)
    assert out.tokens.refresh_token == "r2"


@pytest.mark.parametrize("missing", [{}, {"refreshToken": None}, {"refreshToken": ""}])
def test_refresh_without_new_refresh_token_keeps_the_old(missing: dict) -> None:
    out = classify_refresh(resp(200, {"accessToken": "n.e.w", **missing}), OLD, 0)
    assert isinstance(out, Refreshed)
    assert out.tokens.refresh_token == "old-refresh"


def test_refresh_401_is_dead() -> None:
    assert isinstance(classify_refresh(resp(401, {}), OLD, 0), RefreshDead)


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (200, b"<html>"),
        (200, {"accessToken": None}),
        (200, []),
        (500, {}),
        (502, b"<html>"),
        (429, {}),
        (403, {}),
        (400, {"error": "other"}),
    ],
)
def test_refresh_transient(status: int, body: object) -> None:
    assert isinstance(classify_refresh(resp(status, body), OLD, 0), Transient)
