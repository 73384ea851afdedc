"""The .NET rendering of tool results, pure (no server)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from textstack_sdk.mcp._args import DOTNET_WHITESPACE, utf16_len
from textstack_sdk.mcp._render import (
    CHAPTER_TEXT_LIMIT,
    dotnet_datetime,
    strip_and_cap,
    to_json,
    wire_safe,
)


def test_the_upstream_pinned_example() -> None:
    html = "<p>3 May. Bistritz<span>.</span>&mdash; Left Munich at 8:35 <i>P.M.</i></p>"
    assert strip_and_cap(html) == ("3 May. Bistritz . — Left Munich at 8:35 P.M.", False)


def test_entities_are_decoded_after_the_tags_are_gone() -> None:
    assert strip_and_cap("a &lt;b&gt;bold&lt;/b&gt; c") == ("a <b>bold</b> c", False)
    assert strip_and_cap("&amp;amp; &#65;&#x42; &apos;") == ("&amp; AB '", False)


def test_only_dotnet_entities_with_a_semicolon_decode() -> None:
    assert (
        strip_and_cap("&copy &copy; &nosuch; &#xFFFFFFFFF;")[0] == "&copy © &nosuch; &#xFFFFFFFFF;"
    )


def test_whitespace_collapses_as_dotnet_sees_it() -> None:
    assert strip_and_cap("  a\n\n\tb&nbsp;&nbsp;c\u3000 ")[0] == "a b c"
    assert strip_and_cap("a\x1cb")[0] == "a\x1cb"


def test_a_long_chapter_is_cut_and_trimmed() -> None:
    text, truncated = strip_and_cap("<p>" + "word " * 20_000 + "</p>")
    assert truncated is True
    assert utf16_len(text) <= CHAPTER_TEXT_LIMIT
    assert text == ("word " * 8000).rstrip()


def test_the_cap_counts_utf16_units() -> None:
    emoji = "\U0001f600"
    text, truncated = strip_and_cap(emoji * 3, limit=4)
    assert (text, truncated) == (emoji * 2, True)
    assert strip_and_cap(emoji * 2, limit=4) == (emoji * 2, False)
    # A cut through a pair keeps the high half; rendering then escapes it as .NET does.
    cut, _ = strip_and_cap("a" + emoji, limit=2)
    assert cut == "a\ud83d"
    rendered = to_json({"text": cut})
    rendered.encode("utf-8")
    assert json.loads(rendered) == {"text": "a\ud83d"}


@given(st.text(max_size=300), st.integers(min_value=1, max_value=120))
def test_strip_and_cap_properties(html: str, limit: int) -> None:
    text, truncated = strip_and_cap(html, limit=limit)
    assert utf16_len(text) <= limit
    assert text == text.strip(DOTNET_WHITESPACE)
    assert not any(
        a in DOTNET_WHITESPACE and b in DOTNET_WHITESPACE for a, b in zip(text, text[1:])
    )
    if not truncated:
        assert strip_and_cap(html, limit=10_000) == (text, False)


def test_json_is_compact_keeps_nulls_and_writes_whole_doubles_bare() -> None:
    out = to_json({"a": None, "b": 1.0, "c": 0.5, "d": [1, 2.0], "e": "é<&>"})
    assert out == '{"a":null,"b":1,"c":0.5,"d":[1,2],"e":"é<&>"}'


def test_dates_are_iso_with_offset() -> None:
    utc = datetime(2026, 11, 28, 10, 15, tzinfo=timezone.utc)
    assert dotnet_datetime(utc) == "2026-11-28T10:15:00+00:00"
    assert dotnet_datetime(utc.replace(microsecond=120_000)) == "2026-11-28T10:15:00.12+00:00"
    kyiv = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    assert to_json({"at": kyiv}) == '{"at":"2026-01-02T03:04:05+02:00"}'


def test_wire_safe_plain_text_replaces_lone_surrogates() -> None:
    assert wire_safe("slug '\udc00'") == "slug '\ufffd'"
    assert wire_safe("fine ✓") == "fine ✓"
