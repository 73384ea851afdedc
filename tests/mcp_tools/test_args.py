"""The .NET argument rules of the MCP tools, pure (no server)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from textstack_sdk.mcp._args import (
    ABSENT,
    INT32_MAX,
    INT32_MIN,
    Args,
    ArgumentRefused,
    is_dotnet_blank,
    parse_guid,
    utf16_len,
)
from textstack_sdk.mcp._catalog import TOOLS
from textstack_sdk.mcp._tools import HANDLERS

G = "6f1d2b8e-3c1a-4e4f-9a57-2f4c0b7d9e10"


def refused(fn: Any, *args: Any) -> str:
    with pytest.raises(ArgumentRefused) as info:
        fn(*args)
    return info.value.text


# ------------------------------------------------------------------ the object


@pytest.mark.parametrize("value", [None, [], "x", 1, True, 1.5, ["a"]])
def test_arguments_must_be_an_object(value: Any) -> None:
    # None is a JSON null sent as the arguments: .NET refuses it like any non-object.
    assert refused(Args, value, ("a",)) == "Arguments must be an object."


def test_absent_arguments_read_as_an_empty_object() -> None:
    assert not Args(ABSENT, ("a",)).has("a")
    assert repr(ABSENT) == "ABSENT"


def test_unknown_argument_is_named() -> None:
    assert refused(Args, {"a": 1, "b'": 2}, ("a",)) == "Unknown argument 'b''."


# ------------------------------------------------------------------ strings


def test_utf16_length_counts_astral_characters_twice() -> None:
    assert utf16_len("ab") == 2
    assert utf16_len("\U0001f600") == 2
    assert utf16_len("é") == 1
    assert utf16_len("\ud800") == 1  # a lone surrogate from a JSON escape


def test_required_string_bounds_in_utf16_units() -> None:
    a = Args({"q": "\U0001f600"}, ("q",))
    assert a.required_string("q", 2, 2) == "\U0001f600"
    assert refused(a.required_string, "q", 3, 5) == "'q' must be between 3 and 5 characters."
    assert refused(a.required_string, "q", 1, 1) == "'q' must be between 1 and 1 characters."


def test_strings_are_not_trimmed() -> None:
    assert Args({"q": "  "}, ("q",)).required_string("q", 2, 200) == "  "


@pytest.mark.parametrize("value", [None, 5, True, ["x"], {"a": 1}])
def test_required_string_refuses_non_strings(value: Any) -> None:
    a = Args({"q": value}, ("q",))
    assert refused(a.required_string, "q", 1, 9) == "'q' is required and must be a string."


def test_optional_string() -> None:
    assert Args({}, ("t",)).optional_string("t", 3) is None
    assert Args({"t": ""}, ("t",)).optional_string("t", 3) == ""
    assert refused(Args({"t": None}, ("t",)).optional_string, "t", 3) == "'t' must be a string."
    too_long = Args({"t": "ab\U0001f600"}, ("t",))
    assert refused(too_long.optional_string, "t", 3) == "'t' must be at most 3 characters."


def test_blank_is_dotnet_whitespace() -> None:
    assert is_dotnet_blank(None) and is_dotnet_blank("") and is_dotnet_blank(" \t\u3000\u2028")
    assert not is_dotnet_blank("\x1c")  # str.isspace() says yes; .NET says no


# ------------------------------------------------------------------ integers


@pytest.mark.parametrize(
    "value", [5.0, "5", True, False, None, [5], 1e3, INT32_MAX + 1, INT32_MIN - 1]
)
def test_integers_are_json_integers_within_int32(value: Any) -> None:
    a = Args({"n": value}, ("n",))
    assert refused(a.optional_int, "n", 0, 10) == "'n' must be an integer."


def test_integer_range() -> None:
    assert Args({"n": 0}, ("n",)).optional_int("n", 0, 4) == 0
    assert Args({}, ("n",)).optional_int("n", 0, 4) is None
    assert refused(Args({"n": 5}, ("n",)).optional_int, "n", 0, 4) == "'n' must be between 0 and 4."
    assert Args({"n": INT32_MAX}, ("n",)).optional_int("n", 0, INT32_MAX) == INT32_MAX


@given(st.integers())
def test_int32_bounds_property(n: int) -> None:
    a = Args({"n": n}, ("n",))
    if INT32_MIN <= n <= INT32_MAX:
        assert a.optional_int("n", INT32_MIN, INT32_MAX) == n
    else:
        assert refused(a.optional_int, "n", INT32_MIN, INT32_MAX) == "'n' must be an integer."


# ------------------------------------------------------------------ UUIDs


@pytest.mark.parametrize(
    "text",
    [
        G,
        G.upper(),
        G.replace("-", ""),
        "{" + G + "}",
        "(" + G.upper() + ")",
        "  " + G + "\t",
        "{0x6f1d2b8e,0x3c1a,0x4e4f,{0x9a,0x57,0x2f,0x4c,0x0b,0x7d,0x9e,0x10}}",
        "{ 0X6F1D2B8E, 0x3c1a ,0x4e4f,{0x9a,0x57,0x2f,0x4c,0xb,0x7d,0x9e,0x10}}",
        "{0x06f1d2b8e,0x3c1a,0x4e4f,{0x9a,0x57,0x2f,0x4c,0x00b,0x7d,0x9e,0x10}}",
    ],
)
def test_guid_forms_dotnet_accepts_come_out_lowercase_hyphenated(text: str) -> None:
    assert parse_guid(text) == G


@pytest.mark.parametrize(
    "text",
    [
        "",
        "nope",
        G[:-1],
        G + "0",
        "{" + G,
        "(" + G + "}",
        G.replace("-", "_"),
        "-".join([G.replace("-", "")[:8], G.replace("-", "")[8:]]),
        "\uff16" + G[1:],  # a full-width digit is not hex
        "{0x6f1d2b8e1,0x3c1a,0x4e4f,{0x9a,0x57,0x2f,0x4c,0x0b,0x7d,0x9e,0x10}}",
        "{0x6f1d2b8e,0x3c1a,0x4e4f,{0x9a,0x57,0x2f,0x4c,0x0b,0x7d,0x9e}}",
        "\x1c" + G,  # not .NET whitespace
    ],
)
def test_guid_forms_dotnet_refuses(text: str) -> None:
    assert parse_guid(text) is None


@given(st.uuids())
def test_guid_round_trip_property(value: uuid.UUID) -> None:
    for text in (str(value), value.hex, "{" + str(value).upper() + "}", "(" + str(value) + ")"):
        assert parse_guid(text) == str(value)


def test_uuid_arguments() -> None:
    a = Args({"r": G.upper(), "o": None, "bad": "x"}, ("r", "o", "bad", "gone"))
    assert a.required_uuid("r") == G
    assert refused(a.required_uuid, "gone") == "'gone' is required and must be a UUID."
    assert refused(a.required_uuid, "bad") == "'bad' is required and must be a UUID."
    assert a.optional_uuid("gone") is None
    assert refused(a.optional_uuid, "o") == "'o' must be a UUID."
    assert refused(a.optional_uuid, "bad") == "'bad' must be a UUID."


# ------------------------------------------------------------------ colour, either/or


def test_color() -> None:
    assert Args({}, ("color",)).color() == "yellow"
    assert Args({"color": "blue"}, ("color",)).color() == "blue"
    for bad, text in [
        ("Blue", "'color' must be one of: yellow, green, blue, pink."),
        ("", "'color' must be one of: yellow, green, blue, pink."),
        (None, "'color' must be a string."),
        ("x" * 21, "'color' must be at most 20 characters."),
    ]:
        assert refused(Args({"color": bad}, ("color",)).color) == text


def test_one_book() -> None:
    names = ("bookId", "editionId")
    assert Args({"bookId": G}, names).one_book() == (None, G)
    assert Args({"editionId": G}, names).one_book() == (G, None)
    neither = "Pass either 'bookId' (an uploaded book) or 'editionId' (a catalog book)."
    assert refused(Args({}, names).one_book) == neither
    assert (
        refused(Args({"bookId": G, "editionId": G}, names).one_book) == neither[:-1] + ", not both."
    )
    # bookId is checked first.
    assert (
        refused(Args({"editionId": "x", "bookId": "y"}, names).one_book)
        == "'bookId' must be a UUID."
    )


# ------------------------------------------------------------------ every tool, any JSON

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=10,
)


def _arguments_for(names: tuple[str, ...]) -> st.SearchStrategy[Any]:
    known = st.dictionaries(
        st.sampled_from(names) if names else st.nothing(),
        json_values | st.uuids().map(str) | st.sampled_from(["yellow", "pink", "ab"]),
        max_size=len(names),
    )
    return st.one_of(known, json_values, st.none())


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_validation_never_raises_anything_but_a_refusal(data: st.DataObject) -> None:
    tool = data.draw(st.sampled_from(TOOLS))
    arguments = data.draw(_arguments_for(tool.argument_names))
    try:
        job = HANDLERS[tool.name](Args(arguments, tool.argument_names))
    except ArgumentRefused as exc:
        assert exc.text
        assert exc.text.endswith(".")
    else:
        assert callable(job)


@given(st.text())
def test_utf16_length_property(text: str) -> None:
    units = sum(2 if ord(ch) > 0xFFFF else 1 for ch in text)
    assert utf16_len(text) == units
    a = Args({"s": text}, ("s",))
    assert a.optional_string("s", units) == text
    if units:
        assert (
            refused(a.optional_string, "s", units - 1)
            == f"'s' must be at most {units - 1} characters."
        )
        assert a.required_string("s", units, units) == text
