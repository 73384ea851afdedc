import base64
import json

import pytest

from textstack_sdk._jwt import decode_exp, decode_subject, is_bearer_token


def _seg(obj: object) -> str:
    raw = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def jwt(payload: object) -> str:
    return f"{_seg({'alg': 'none'})}.{_seg(payload)}.sig"


@pytest.mark.parametrize(
    ("exp", "expected"),
    [
        (1_800_000_000, 1_800_000_000.0),
        (1_800_000_000.5, 1_800_000_000.5),
        ("1800000000", 1_800_000_000.0),
        (" 1800000000 ", 1_800_000_000.0),
        (True, None),
        (False, None),
        (None, None),
        ([1], None),
        ({"a": 1}, None),
        ("soon", None),
        ("nan", None),
        ("inf", None),
        (-5, None),
        (10**400, None),
        ("1e400", None),
    ],
)
def test_exp_values(exp: object, expected: object) -> None:
    assert decode_exp(jwt({"exp": exp})) == expected


def test_nan_literal_in_payload() -> None:
    payload = _seg(b'{"exp": NaN}')
    token = f"{_seg({})}.{payload}.s"
    assert decode_exp(token) is None


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "a.b",
        "a.b.c.d.e",
        "a..c",
        "a.!!!.c",
        "a.Zm9v.c",  # 'foo' is not JSON
        f"a.{_seg([1, 2])}.c",  # not an object
        "a." + _seg(b"\xff\xfe") + ".c",  # not UTF-8
        "a.A.c",  # impossible base64 length
        f"a.{_seg(b'[' * 100000)}.c",  # deep nesting
        None,
        42,
        "x" * 20000,
    ],
)
def test_never_raises(token: object) -> None:
    assert decode_exp(token) is None


def test_missing_exp() -> None:
    assert decode_exp(jwt({"sub": "x"})) is None


def test_subject_prefers_email() -> None:
    assert decode_subject(jwt({"sub": "u1", "email": "a@b.c"})) == "a@b.c"
    assert decode_subject(jwt({"sub": "u1"})) == "u1"
    assert decode_subject("garbage") is None


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("abc.DEF-_~+/=", True),
        ("abc==", True),
        ("", False),
        ("a b", False),
        ("a\r\nX-Evil: 1", False),
        ("=abc", False),
        ("tök", False),
        (None, False),
        ("a" * 20000, False),
    ],
)
def test_bearer_token_characters(value: object, ok: bool) -> None:
    assert is_bearer_token(value) is ok
