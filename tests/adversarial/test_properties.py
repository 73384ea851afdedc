"""Property tests of every parser that reads what a server, a file or a token says.

Each property states what may come out (a value of the documented type, or the one
documented exception) for any input; hypothesis searches for a counterexample. Every
example is counted into docs/RELIABILITY.md.
"""

from __future__ import annotations

import base64
import dataclasses
import email.utils
import functools
import json
import logging
import math
import os
import re
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
from hypothesis import given
from hypothesis import strategies as st

from textstack_sdk import StaticTokenProvider, TextStackApiClient, TextStackError
from textstack_sdk import _api_parse as P
from textstack_sdk import _wire as wire
from textstack_sdk._cache import MAX_CACHE_BYTES, FileTokenCache
from textstack_sdk._errors import ApiError, AuthorizationRequired, ProtocolError
from textstack_sdk._http import Request, Response, parse_retry_after
from textstack_sdk._jwt import _MAX_EXP, MAX_TOKEN_LENGTH, decode_exp, is_bearer_token
from textstack_sdk._models import DeviceAuthorization, TokenSet
from textstack_sdk._transport import Urllib3Transport
from textstack_sdk.testing import FakeTextStackServer, MockTransport

from ._budget import PROPERTY_SETTINGS
from ._report import scenario

pytestmark = pytest.mark.timeout(120)

NOW = 1_800_000_000.0

# ------------------------------------------------------------------ strategies

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**300, max_value=10**400),
    st.floats(),
    st.text(max_size=40),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=25,
)
# The API parsers are fuzzed with integers far past float range too (10**400 once made
# float() raise OverflowError; test_api_parser_huge_integer_is_a_protocol_error).
api_json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(10**500), max_value=10**500),
        st.floats(),
        st.text(max_size=40),
    ),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=25,
)
bearer_tokens = st.from_regex(r"[A-Za-z0-9\-._~+/]{1,60}={0,2}", fullmatch=True)
numeric_strings = st.one_of(
    st.from_regex(r" ?[+-]?\d{0,20}(\.\d{0,20})?([eE][+-]?\d{1,4})? ?", fullmatch=True),
    st.sampled_from(["nan", "NaN", "inf", "-inf", "Infinity", "1_000", "0x10", "", " ", "1e999"]),
)
exp_values = st.one_of(
    json_scalars,
    numeric_strings,
    st.floats(min_value=0, max_value=_MAX_EXP),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
# A header value as a server could send it: any text, seconds, dates, huge numbers.
http_dates = st.floats(min_value=-1e10, max_value=2.5e11).map(
    lambda t: email.utils.formatdate(t, usegmt=True) if -6e10 < t < 2.5e11 else str(t)
)
retry_after_values = st.one_of(
    st.text(max_size=60),
    st.integers(min_value=-(10**30), max_value=10**400).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    numeric_strings,
    http_dates,
    st.sampled_from(
        [
            "Wed, 21 Oct 2015 07:28:00 GMT",
            "Fri, 31 Dec 9999 23:59:59 GMT",
            "Mon, 01 Jan 0001 00:00:00 GMT",
            "Sun, 06 Nov 1994 08:49:37 +9999",
            "Thu, 01 Jan 1970 00:00:00 -0000",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "99999999999999999999999999999",
            "1" + "0" * 400,
            "\u0661\u0662",  # Arabic-Indic digits: str.isdigit() is True
        ]
    ),
)

AUTH_KEYS = [
    "access_token",
    "refresh_token",
    "token_type",
    "error",
    "accessToken",
    "refreshToken",
    "device_code",
    "user_code",
    "verification_uri",
    "verification_uri_complete",
    "expires_in",
    "interval",
]
auth_field_values = st.one_of(
    json_values,
    bearer_tokens,
    numeric_strings,
    st.sampled_from(
        [
            "Bearer",
            "bearer",
            " BEARER ",
            "mac",
            "authorization_pending",
            "slow_down",
            "access_denied",
            "expired_token",
            "invalid_grant",
            "https://textstack.app/device",
            "http://x/\n",
            "javascript:alert(1)",
            0,
            -1,
            1e308,
            True,
        ]
    ),
)
auth_documents = st.dictionaries(st.sampled_from(AUTH_KEYS), auth_field_values, max_size=12)


def _dump(value: Any, ascii_only: bool = True) -> bytes:
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8")


VALID_AUTH = {
    "access_token": "eyJhbGciOiJFUzI1NiJ9.eyJleHAiOjE4MDAwMDA5MDB9.c2lnbmF0dXJlLWEx",
    "refresh_token": "rt-0123456789abcdef0123456789abcdef",
    "token_type": "Bearer",
    "expires_in": 600,
    "accessToken": "eyJhbGciOiJFUzI1NiJ9.eyJleHAiOjE4MDAwMDA5MDB9.c2lnbmF0dXJlLWEy",
    "refreshToken": "rt-fedcba9876543210fedcba9876543210",
    "device_code": "dc-0123456789abcdef0123456789abcdef",
    "user_code": "ABCD-EFGH",
    "verification_uri": "https://textstack.app/device",
    "verification_uri_complete": "https://textstack.app/device?code=ABCD-EFGH",
    "interval": 5,
}


@st.composite
def near_valid_auth(draw: st.DrawFn) -> dict[str, Any]:
    """A well-formed auth answer with a few fields removed or replaced."""
    doc = dict(VALID_AUTH)
    for key in draw(st.lists(st.sampled_from(AUTH_KEYS), max_size=3)):
        if draw(st.booleans()):
            doc.pop(key, None)
        else:
            doc[key] = draw(auth_field_values)
    return doc


@st.composite
def bodies(draw: st.DrawFn, documents: st.SearchStrategy[Any] = auth_documents) -> bytes:
    kind = draw(st.integers(0, 7))
    if kind >= 6:
        return _dump(draw(near_valid_auth()), ascii_only=draw(st.booleans()))
    if kind == 0:
        return draw(st.binary(max_size=300))
    if kind == 1:
        return _dump(draw(json_values))
    if kind == 2:
        return b"<html><body><h1>502 Bad Gateway</h1>" + draw(st.binary(max_size=50)) + b"</html>"
    if kind == 3:
        depth = draw(st.integers(100, 5000))
        return b'{"error":' * depth + b"1" + b"}" * depth
    data = _dump(draw(documents), ascii_only=draw(st.booleans()))
    if kind == 5:
        data = data[: draw(st.integers(0, len(data)))]  # truncated mid-body
    return data


header_maps = st.dictionaries(
    st.sampled_from(["retry-after", "content-type", "www-authenticate", "location", "x-odd"]),
    retry_after_values,
    max_size=4,
)
statuses = st.one_of(
    st.just(200),
    st.sampled_from([200, 201, 204, 301, 400, 401, 403, 404, 409, 429, 500, 502, 503, 504]),
    st.integers(100, 999),
)
responses = st.one_of(
    st.builds(Response, statuses, header_maps, bodies()),
    # Mostly-valid 200 answers, so the success paths are searched as hard as the errors.
    st.builds(
        Response, st.just(200), header_maps, near_valid_auth().map(lambda d: _dump(d, False))
    ),
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _printable(text: str) -> bool:
    return bool(text) and all(32 < ord(ch) < 127 for ch in text)


# ------------------------------------------------------------------ JWT exp

JWT_ANY = scenario(
    "parsers",
    "JWT exp: arbitrary objects, text, bytes",
    "None or a finite exp in range; never raises",
)
JWT_CRAFTED = scenario(
    "parsers",
    "JWT exp: three-segment tokens with arbitrary JSON payloads",
    "exp = the number when it is a finite non-bool number in range, else None",
)
JWT_NESTED = scenario(
    "parsers",
    "JWT exp: deeply nested / non-UTF-8 / bad base64 payloads",
    "None; RecursionError and decode errors caught",
)


def _check_exp(result: Optional[float]) -> None:
    assert result is None or (isinstance(result, float) and math.isfinite(result))
    if result is not None:
        assert 0 <= result <= _MAX_EXP


@PROPERTY_SETTINGS
@given(st.one_of(st.text(), st.binary(), json_values, st.from_regex(r"[\w.\-=]{0,80}")))
def test_decode_exp_of_anything(value: Any) -> None:
    JWT_ANY.add("inputs tried")
    _check_exp(decode_exp(value))
    assert isinstance(is_bearer_token(value), bool)


def _expected_exp(value: object) -> Optional[float]:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:
            return None
        return number if math.isfinite(number) and 0 <= number <= _MAX_EXP else None
    if isinstance(value, str):
        return None if value.strip() == "" else _expected_from_string(value)
    return None


# A numeric string is ASCII decimal: no sign, "1_000", "inf", "0x10" or other scripts' digits.
_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


def _expected_from_string(text: str) -> Optional[float]:
    stripped = text.strip()
    if len(stripped) > 32 or _DECIMAL.fullmatch(stripped) is None:
        return None
    number = float(stripped)
    return number if math.isfinite(number) and 0 <= number <= _MAX_EXP else None


@PROPERTY_SETTINGS
@given(
    header=json_values,
    claims=st.dictionaries(st.text(max_size=8), json_values, max_size=4),
    exp=st.one_of(st.none(), exp_values),
    signature=st.binary(max_size=80),
    payload_is_object=st.booleans(),
    ascii_only=st.booleans(),
)
def test_decode_exp_of_crafted_tokens(
    header: Any,
    claims: dict[str, Any],
    exp: Any,
    signature: bytes,
    payload_is_object: bool,
    ascii_only: bool,
) -> None:
    JWT_CRAFTED.add("inputs tried")
    payload: Any = dict(claims)
    if exp is not None:
        payload["exp"] = exp
    if not payload_is_object:
        payload = [payload]
    token = ".".join((_b64(_dump(header)), _b64(_dump(payload, ascii_only)), _b64(signature)))
    result = decode_exp(token)
    _check_exp(result)
    if len(token) > MAX_TOKEN_LENGTH or not payload_is_object:
        assert result is None
    else:
        expected = _expected_exp(payload.get("exp"))
        assert result == expected


@PROPERTY_SETTINGS
@given(
    depth=st.integers(1, 6000),
    opener=st.sampled_from([b"[", b'{"exp":', b'{"a":[']),
    raw=st.binary(max_size=200),
    segments=st.integers(0, 7),
    mode=st.integers(0, 3),
)
def test_decode_exp_of_nested_and_broken_payloads(
    depth: int, opener: bytes, raw: bytes, segments: int, mode: int
) -> None:
    JWT_NESTED.add("inputs tried")
    if mode == 0:
        payload = _b64(opener * depth + b"1")  # unclosed, deeply nested
    elif mode == 1:
        payload = _b64(raw)  # arbitrary bytes, mostly not UTF-8 JSON
    elif mode == 2:
        payload = _b64(b"[" * depth + b"]" * depth)
    else:
        payload = raw.decode("latin-1")  # not base64url at all
    parts = ["eyJhbGciOiJub25lIn0", payload, "c2ln"]
    token = ".".join(parts if segments == 3 else (parts * 3)[: max(segments, 1)])
    _check_exp(decode_exp(token))
    if mode in (0, 2) and segments == 3:
        assert decode_exp(token) is None


# ------------------------------------------------------------------ cache reader

CACHE_BYTES = scenario(
    "parsers",
    "cache file: arbitrary bytes / JSON shapes / truncated / BOM in a 0600 file",
    "load() gives None or a TokenSet of bearer tokens; corrupt files moved aside with one "
    "warning; blank files (.NET mid-write) left in place",
)

jwt_like = st.builds(
    lambda exp, sig: ".".join(("eyJhbGciOiJFUzI1NiJ9", _b64(_dump({"exp": exp})), _b64(sig))),
    exp_values,
    st.binary(min_size=1, max_size=20),
)
cache_documents = st.dictionaries(
    st.sampled_from(["accessToken", "refreshToken", "accessExpiresAt", "other"]),
    st.one_of(
        bearer_tokens,
        jwt_like,
        json_values,
        st.sampled_from(["", "2026-11-28T10:15:00.1234567+00:00", "2026-02-30T00:00:00Z"]),
    ),
    max_size=4,
)


@st.composite
def cache_files(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return draw(st.binary(max_size=400))
    raw = _dump(draw(cache_documents | json_values), ascii_only=draw(st.booleans()))
    if kind == 2:
        raw = b"\xef\xbb\xbf" + raw
    elif kind == 3:
        raw = raw[: draw(st.integers(0, len(raw)))]
    elif kind == 4:
        depth = draw(st.integers(500, 4300))  # up to just past the 64 KiB cap
        raw = b'{"accessToken":' * depth
    return raw


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@functools.lru_cache(maxsize=1)
def _scratch_root() -> str:
    return tempfile.mkdtemp(prefix="textstack-adversarial-")


@PROPERTY_SETTINGS
@given(raw=cache_files())
def test_cache_load_of_arbitrary_files(raw: bytes) -> None:
    CACHE_BYTES.add("inputs tried")
    folder = tempfile.mkdtemp(dir=_scratch_root())
    path = Path(folder) / "mcp-token.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, raw)
    os.close(fd)
    handler = _Records()
    logger = logging.getLogger("textstack_sdk.cache")
    logger.addHandler(handler)
    try:
        result = FileTokenCache(path).load()
    finally:
        logger.removeHandler(handler)
    warnings = [r for r in handler.records if r.levelno >= logging.WARNING]
    names = sorted(os.listdir(folder))
    if result is None and len(raw) > MAX_CACHE_BYTES:
        assert path.read_bytes() == raw and names == ["mcp-token.json"]  # refused, untouched
        assert len(warnings) == 1
        CACHE_BYTES.add("oversized files refused")
    elif not (raw[3:] if raw.startswith(b"\xef\xbb\xbf") else raw).strip():
        # Blank is the .NET tool's file between its truncate and its write: logged out,
        # left in place, nothing to warn about.
        assert result is None
        assert path.read_bytes() == raw and names == ["mcp-token.json"]
        assert warnings == []
        CACHE_BYTES.add("blank files left in place")
    elif result is None:
        corrupt = [n for n in names if n.startswith("mcp-token.json.corrupt-")]
        assert len(corrupt) == 1, names
        assert (Path(folder) / corrupt[0]).read_bytes() == raw
        assert not path.exists()
        assert len(warnings) == 1
        CACHE_BYTES.add("corrupt files moved aside")
    else:
        assert isinstance(result, TokenSet)
        if result.access_token == "":
            # "accessToken": null beside a refresh token: an expired sign-in.
            assert is_bearer_token(result.refresh_token)
            assert result.access_exp is not None and result.access_exp <= time.time()
            CACHE_BYTES.add("null access tokens read as expired")
        else:
            assert is_bearer_token(result.access_token)
            assert result.refresh_token is None or is_bearer_token(result.refresh_token)
            _check_exp(result.access_exp)
        assert path.read_bytes() == raw
        assert warnings == []
    for record in warnings:
        text = record.getMessage()
        assert "accessToken" not in text or "missing" in text
    _remove_tree(folder)


def _remove_tree(folder: str) -> None:
    for name in os.listdir(folder):
        os.unlink(os.path.join(folder, name))
    os.rmdir(folder)


# ------------------------------------------------------------------ auth classifiers

POLL_CLASSIFIER = scenario(
    "parsers",
    "auth: classify_device_token over arbitrary status/headers/bodies",
    "Granted (bearer tokens) / PollError (short printable code) / Transient; never raises",
)
REFRESH_CLASSIFIER = scenario(
    "parsers",
    "auth: classify_refresh over arbitrary status/headers/bodies",
    "Refreshed / RefreshDead / Transient; a refresh token is never lost or nulled",
)
DEVICE_CODE_PARSER = scenario(
    "parsers",
    "auth: parse_device_authorization over arbitrary answers",
    "DeviceAuthorization with bounded interval/expires_in, "
    "or ProtocolError without the device code",
)


def _token_values(body: bytes) -> list[str]:
    try:
        data = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError):
        return []
    if not isinstance(data, dict):
        return []
    found = []
    for key in ("access_token", "refresh_token", "accessToken", "refreshToken", "device_code"):
        value = data.get(key)
        if isinstance(value, str) and len(value) >= 12 and value != data.get("error"):
            found.append(value)
    return found


def _check_transient(outcome: wire.Transient) -> None:
    assert isinstance(outcome.reason, str) and outcome.reason
    ra = outcome.retry_after
    assert ra is None or (isinstance(ra, float) and math.isfinite(ra) and ra >= 0)


@PROPERTY_SETTINGS
@given(response=responses, now=st.floats(0, 1e10))
def test_classify_device_token_never_raises(response: Response, now: float) -> None:
    POLL_CLASSIFIER.add("inputs tried")
    outcome = wire.classify_device_token(response, now)
    POLL_CLASSIFIER.add(f"{type(outcome).__name__} outcomes")
    assert isinstance(outcome, (wire.Granted, wire.PollError, wire.Transient))
    if isinstance(outcome, wire.Granted):
        assert response.status == 200
        assert is_bearer_token(outcome.tokens.access_token)
        assert outcome.tokens.refresh_token is None or is_bearer_token(outcome.tokens.refresh_token)
    elif isinstance(outcome, wire.PollError):
        assert _printable(outcome.error) and len(outcome.error) <= 64
    else:
        _check_transient(outcome)
    for secret in _token_values(response.body):
        assert secret not in repr(outcome) and secret not in str(outcome)


@PROPERTY_SETTINGS
@given(response=responses, previous=bearer_tokens, now=st.floats(0, 1e10))
def test_classify_refresh_never_raises_nor_loses_the_refresh_token(
    response: Response, previous: str, now: float
) -> None:
    REFRESH_CLASSIFIER.add("inputs tried")
    sent = TokenSet("old-access", previous, None)
    outcome = wire.classify_refresh(response, sent, now)
    REFRESH_CLASSIFIER.add(f"{type(outcome).__name__} outcomes")
    assert isinstance(outcome, (wire.Refreshed, wire.RefreshDead, wire.Transient))
    if isinstance(outcome, wire.Refreshed):
        assert response.status == 200
        assert is_bearer_token(outcome.tokens.access_token)
        # No refresh token lost: a new one, or the one we sent.
        assert is_bearer_token(outcome.tokens.refresh_token)
    elif isinstance(outcome, wire.RefreshDead):
        assert response.status in (400, 401)
    else:
        _check_transient(outcome)
    for secret in _token_values(response.body):
        assert secret not in repr(outcome) and secret not in str(outcome)


@PROPERTY_SETTINGS
@given(response=responses)
def test_parse_device_authorization_gives_a_value_or_protocol_error(response: Response) -> None:
    DEVICE_CODE_PARSER.add("inputs tried")
    try:
        auth = wire.parse_device_authorization(response)
    except ProtocolError as exc:
        DEVICE_CODE_PARSER.add("ProtocolErrors checked")
        for secret in _token_values(response.body):
            assert secret not in str(exc) and secret not in repr(exc)
        return
    assert isinstance(auth, DeviceAuthorization)
    DEVICE_CODE_PARSER.add("DeviceAuthorizations checked")
    assert 0 < auth.interval <= wire.MAX_INTERVAL and math.isfinite(auth.interval)
    assert 0 < auth.expires_in <= wire.MAX_CODE_LIFETIME and math.isfinite(auth.expires_in)
    assert _printable(auth.device_code)
    # The repr must not depend on the device code (which may equal another field's text).
    assert repr(auth) == repr(dataclasses.replace(auth, device_code="x"))
    assert auth.verification_uri.lower().startswith(("https://", "http://"))


# ------------------------------------------------------------------ Retry-After

RETRY_AFTER = scenario(
    "parsers",
    "Retry-After: arbitrary strings, HTTP-dates, huge numbers",
    "None or a finite non-negative float (at most 1e9)",
)


@PROPERTY_SETTINGS
@given(value=st.one_of(st.none(), retry_after_values), now=st.floats(-1e10, 1e12))
def test_parse_retry_after_is_none_or_finite(value: Optional[str], now: float) -> None:
    RETRY_AFTER.add("inputs tried")
    result = parse_retry_after(value, now)
    assert result is None or (
        isinstance(result, float) and math.isfinite(result) and 0 <= result <= 1e9
    )


# ------------------------------------------------------------------ API parsers

KINDS: list[Callable[[Any, str], Any]] = [
    P.ask_answer,
    P.book,
    P.chapter,
    P.chapter_review,
    P.highlight,
    P.highlights,
    P.insight,
    P.insights,
    P.library_hits,
    P.my_book_detail,
    P.my_book_progress,
    P.my_books,
    P.my_chapter,
    P.progress,
    P.search_results,
    P.shelves,
    P.user,
    P.vocabulary_page,
]
API_KINDS = scenario(
    "parsers",
    f"API: every result parser ({len(KINDS)}) over arbitrary JSON",
    "the model, or a ProtocolError naming the route",
)
API_MUTATED = scenario(
    "parsers",
    "API: real server answers with one subtree replaced/removed, through the client",
    "the method's result type (or None), or ApiError/ProtocolError",
)
API_RAW = scenario(
    "parsers",
    "API: arbitrary status/headers/bodies through the client, decode_json, api_error",
    "a result, ApiError/ProtocolError/AuthorizationRequired; api_error never raises",
)
TIMESTAMPS = scenario(
    "parsers", "API: parse_timestamp over arbitrary text", "an aware datetime or ValueError"
)


@PROPERTY_SETTINGS
@given(kind=st.sampled_from(KINDS), value=api_json_values, deep=st.integers(0, 3))
def test_every_api_parser_gives_a_model_or_protocol_error(
    kind: Callable[[Any, str], Any], value: Any, deep: int
) -> None:
    API_KINDS.add("inputs tried")
    if deep == 3:
        for _ in range(3000):
            value = {"items": [value], "review": value}
    try:
        P.parse(kind, value, route="GET /x", status=200)
    except ProtocolError as exc:
        assert exc.route == "GET /x" and exc.status == 200


API_HUGE_INT = scenario(
    "parsers",
    "API: an integer past float range (10**400) in a numeric field",
    "ProtocolError, not a raw OverflowError",
)


@pytest.mark.parametrize(
    ("kind", "document"),
    [
        (P.progress, {"percent": 10**400}),
        (P.shelves, {"recentlyAdded": [{"id": "b1", "progressPercent": -(10**400)}]}),
    ],
    ids=["progress.percent", "shelves.progressPercent"],
)
def test_api_parser_huge_integer_is_a_protocol_error(
    kind: Callable[[Any, str], Any], document: Any
) -> None:
    API_HUGE_INT.add("inputs tried")
    with pytest.raises(ProtocolError):
        P.parse(kind, document, route="GET /x")


@PROPERTY_SETTINGS
@given(
    text=st.one_of(
        st.text(max_size=80),
        st.from_regex(
            r"\d{4}-\d\d-\d\d([T ]\d\d:\d\d(:\d\d(\.\d{1,20})?)?)?([Zz]|[+-]\d\d:?\d\d)?",
            fullmatch=True,
        ),
    )
)
def test_parse_timestamp_is_aware_or_value_error(text: str) -> None:
    TIMESTAMPS.add("inputs tried")
    try:
        parsed = P.parse_timestamp(text)
    except ValueError:
        return
    assert isinstance(parsed, datetime) and parsed.tzinfo is not None


E_PRIDE = "pride-and-prejudice"


def _calls(ids: dict[str, str]) -> dict[str, Callable[[TextStackApiClient], Any]]:
    pride, war = ids["pride-and-prejudice"], ids["the-art-of-war"]
    chapter_1 = ids.get("pride-and-prejudice/chapter-1", "c1")
    return {
        "search_books": lambda c: c.search_books("truth", limit=3),
        "get_book": lambda c: c.get_book(E_PRIDE),
        "get_chapter": lambda c: c.get_chapter(E_PRIDE, "chapter-2"),
        "ask_book": lambda c: c.ask_book(pride, "What truth?", k=2),
        "list_my_highlights": lambda c: c.list_my_highlights(pride),
        "list_my_vocabulary": lambda c: c.list_my_vocabulary(),
        "search_my_library": lambda c: c.search_my_library("war"),
        "list_my_books": lambda c: c.list_my_books(),
        "get_my_book": lambda c: c.get_my_book(war),
        "get_my_chapter": lambda c: c.get_my_chapter(war, "waging-war"),
        "list_my_book_highlights": lambda c: c.list_my_book_highlights(war),
        "get_my_insights": lambda c: c.get_my_insights(edition_id=pride),
        "get_shelves": lambda c: c.get_shelves(),
        "get_progress": lambda c: c.get_progress(pride),
        "get_my_book_progress": lambda c: c.get_my_book_progress(war),
        "get_chapter_review": lambda c: c.get_chapter_review("chapter-1", edition_id=pride, part=1),
        "save_highlight": lambda c: c.save_highlight(pride, chapter_1, "It is a truth"),
        "save_insight": lambda c: c.save_insight("an insight", edition_id=pride),
    }


class _Recording:
    """Wraps a transport and keeps the last response."""

    def __init__(self, inner: Urllib3Transport) -> None:
        self.inner = inner
        self.last: Optional[Response] = None

    def handle_request(self, request: Request) -> Response:
        self.last = self.inner.handle_request(request)
        return self.last

    def close(self) -> None:
        self.inner.close()


@functools.lru_cache(maxsize=1)
def _samples() -> tuple[dict[str, Any], dict[str, type]]:
    """Real answers of the local server for every call: (JSON by call, result type)."""
    samples: dict[str, Any] = {}
    types: dict[str, type] = {}
    with FakeTextStackServer() as server:
        access, _ = server.issue_tokens()
        recording = _Recording(Urllib3Transport(timeout=5))
        client = TextStackApiClient(
            server.api_url,
            site_host=server.site_host,
            token_provider=StaticTokenProvider(access),
            transport=recording,
        )
        for name, call in _calls(server.sample_ids).items():
            result = call(client)
            assert recording.last is not None and recording.last.status < 300, name
            if recording.last.body.strip():
                samples[name] = json.loads(recording.last.body)
                types[name] = type(result)
        recording.close()
    return samples, types


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value[:4]):
            yield from _paths(child, (*prefix, index))


def _mutate(value: Any, path: tuple[Any, ...], replacement: Any, delete: bool) -> Any:
    if not path:
        return replacement
    head, rest = path[0], path[1:]
    copy: Any = dict(value) if isinstance(value, dict) else list(value)
    if not rest and delete:
        del copy[head]
    else:
        copy[head] = _mutate(copy[head], rest, replacement, delete)
    return copy


@PROPERTY_SETTINGS
@given(data=st.data())
def test_client_over_mutated_real_answers(data: st.DataObject) -> None:
    samples, types = _samples()
    name = data.draw(st.sampled_from(sorted(samples)))
    original = samples[name]
    path = data.draw(st.sampled_from(list(_paths(original))))
    delete = bool(path) and data.draw(st.booleans())
    replacement = data.draw(api_json_values)
    body = _dump(_mutate(original, path, replacement, delete))
    API_MUTATED.add("inputs tried")
    transport = MockTransport(
        lambda request: Response(200, {"content-type": "application/json"}, body)
    )
    calls = _calls({"pride-and-prejudice": "e1", "the-art-of-war": "b1"})
    with TextStackApiClient(
        "https://textstack.app/api",
        site_host="textstack.app",
        token_provider=StaticTokenProvider("tok"),
        transport=transport,
    ) as client:
        try:
            result = calls[name](client)
        except (ApiError, ProtocolError):
            API_MUTATED.add("errors checked")
            return
    assert result is None or isinstance(result, types[name])
    API_MUTATED.add("results checked")


@PROPERTY_SETTINGS
@given(
    name=st.sampled_from(sorted(_calls({"pride-and-prejudice": "e", "the-art-of-war": "b"}))),
    response=st.builds(Response, statuses, header_maps, bodies(api_json_values)),
)
def test_client_over_arbitrary_answers(name: str, response: Response) -> None:
    API_RAW.add("inputs tried")
    with TextStackApiClient(
        "https://textstack.app/api",
        site_host="textstack.app",
        token_provider=StaticTokenProvider("tok"),
        transport=MockTransport(lambda request: response),
    ) as client:
        try:
            _calls({"pride-and-prejudice": "e1", "the-art-of-war": "b1"})[name](client)
        except (ApiError, AuthorizationRequired) as exc:
            assert isinstance(exc, TextStackError)
    error = P.api_error(response.status, response.headers, response.body, route="GET /x")
    assert isinstance(error, ApiError) and error.status == response.status
    assert all(ch not in str(error) for ch in "\x1b\r\n\x00")
    try:
        P.decode_json(response.body, route="GET /x")
    except ProtocolError as exc:
        assert all(ch not in str(exc) for ch in "\x1b\r\n\x00")
