"""Rendering a ``Pending`` is safe for any Pending, not only ones the SDK parsed.

``Pending`` is public and frozen, so callers build their own from whatever they have.
Hypothesis searches arbitrary strings for a rendering that would emit a control
character, escape an HTML attribute or text context, inject Markdown or HTML, or turn a
non-http(s) URL into a link.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Optional
from urllib.parse import unquote

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from textstack_sdk import Pending

# ESC, BEL and every other C0 control, DEL, the C1 range (CSI 0x9b...), bidi overrides.
CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")

HOSTILE = [
    "javascript:alert(1)",
    "JAVASCRIPT:alert(1)",
    " javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    'https://x/"><script>alert(1)</script>',
    "https://x/'onmouseover='alert(1)",
    "https://x/)[evil](javascript:alert(1)",
    "https://x/\x1b]8;;javascript:alert(1)\x07",
    "http\x00s://x/",
    "https://x/\u202e",
    "\x9b31m",
    "<img src=x onerror=alert(1)>",
    "`code` **bold** [link](javascript:x) ![i](http://x/i.png)",
    "https://x/>\n<script>",
]

urls = st.one_of(
    st.text(),
    st.sampled_from(HOSTILE),
    st.builds(lambda tail: "https://" + tail, st.text()),
    st.builds(lambda tail: "http://" + tail, st.text()),
)


class _Html(HTMLParser):
    """Collects tags, attributes and text, as a browser would see them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.hrefs: list[Optional[str]] = []
        self.attrs: list[tuple[str, Optional[str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, Optional[str]]]) -> None:
        self.tags.append(tag)
        self.attrs.extend(attrs)
        if tag == "a":
            self.hrefs.extend(v for k, v in attrs if k == "href")


def _pendings(uri: str, code: str, complete: Optional[str]) -> Pending:
    return Pending(verification_uri=uri, user_code=code, verification_uri_complete=complete)


def _is_web(url: Optional[str]) -> bool:
    return url is not None and re.match(r"https?://[^/?#\s]", url, re.IGNORECASE) is not None


@settings(max_examples=300, deadline=None)
@given(uri=urls, code=st.text(), complete=st.one_of(st.none(), urls))
@example(uri="javascript:alert(1)", code="A", complete=None)
@example(uri='https://x/"><script>alert(1)</script>', code="<b>", complete=None)
@example(uri="https://ok/device", code="A\x1bB", complete="data:text/html,x")
def test_html_is_safe_for_any_pending(uri: str, code: str, complete: Optional[str]) -> None:
    pending = _pendings(uri, code, complete)
    rendered = pending._repr_html_()
    assert not CONTROLS.search(rendered)
    parser = _Html()
    parser.feed(rendered)
    parser.close()
    # The structure is ours whatever the fields hold: no injected tag or attribute.
    assert set(parser.tags) <= {"div", "b", "a", "code"}
    assert {name for name, _ in parser.attrs} <= {"class", "href", "target", "rel", "style"}
    assert len(parser.tags) == (4 if parser.hrefs else 3)
    for href in parser.hrefs:
        assert _is_web(href), href
        assert href == pending.link  # a link only for an untouched http(s) URL
    if not _is_web(pending.link):
        assert parser.hrefs == []


@settings(max_examples=300, deadline=None)
@given(uri=urls, code=st.text(), complete=st.one_of(st.none(), urls))
@example(uri="https://x/)[evil](javascript:alert(1)", code="`x`", complete=None)
@example(uri="<script>alert(1)</script>", code="**b**", complete=None)
def test_markdown_is_safe_for_any_pending(uri: str, code: str, complete: Optional[str]) -> None:
    pending = _pendings(uri, code, complete)
    rendered = pending._repr_markdown_()
    assert not CONTROLS.search(rendered)
    prefix = "**TextStack sign-in required.** Open "
    assert rendered.startswith(prefix)
    rest = rendered[len(prefix) :]
    linked = re.fullmatch(r"\[(.*)\]\(<([^<>]*)>\)( and enter the code .*)", rest, re.S)
    if linked is not None:
        shown, target, rest = linked.groups()
        # The target is the link itself, with only risky characters percent-encoded.
        assert _is_web(target) and unquote(target) == unquote(pending.link)
        assert not re.search(r"[\s()<>\"\\]", target)
        _assert_inert(shown)
    else:
        assert not _is_web(pending.link) or _is_changed_by_cleaning(pending.link)
    assert rest.endswith(", then run the cell again.")
    # Whatever the fields hold, the rest is text: no raw HTML, every mark escaped.
    _assert_inert(rest[: -len(", then run the cell again.")])


def _is_changed_by_cleaning(url: str) -> bool:
    return bool(CONTROLS.search(url)) or url != " ".join(url.split()) or " " in url


def _assert_inert(markdown: str) -> None:
    """Every Markdown or HTML mark in ``markdown`` is backslash-escaped."""
    i = 0
    while i < len(markdown):
        char = markdown[i]
        if char == "\\":
            i += 2
            continue
        assert char not in "`*_[]()<>!|~#", (char, markdown)
        i += 1


@settings(max_examples=300, deadline=None)
@given(uri=urls, code=st.text(), complete=st.one_of(st.none(), urls))
def test_terminal_text_is_one_safe_line(uri: str, code: str, complete: Optional[str]) -> None:
    pending = _pendings(uri, code, complete)
    for text in (pending.message, str(pending)):
        assert not CONTROLS.search(text)
        assert "\n" not in text and "\r" not in text


@pytest.mark.parametrize("value", [None, 42, b"https://x/", ["https://x/"]])
def test_fields_of_the_wrong_type_render_without_a_link_or_an_error(value: object) -> None:
    pending = Pending(verification_uri=value, user_code=value)  # type: ignore[arg-type]
    for text in (pending.message, pending._repr_html_(), pending._repr_markdown_()):
        assert not CONTROLS.search(text)
    assert "href" not in pending._repr_html_()
    assert "](<" not in pending._repr_markdown_()


def test_a_plain_https_url_is_a_link_in_both_renderings() -> None:
    pending = Pending("https://textstack.app/device", "WDJB-MJHT")
    assert 'href="https://textstack.app/device"' in pending._repr_html_()
    assert "(<https://textstack.app/device>)" in pending._repr_markdown_()
    assert "WDJB\\-MJHT" in pending._repr_markdown_()


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (1795852800.0, "2026-11-28T08:00:00+00:00"),
        (1795852800, "2026-11-28T08:00:00+00:00"),
        (None, None),
        (float("nan"), None),
        (1e300, None),
        (True, None),
    ],
)
def test_expires_at_has_a_datetime_twin(seconds: object, expected: Optional[str]) -> None:
    pending = Pending("https://x/device", "A", expires_at=seconds)  # type: ignore[arg-type]
    when = pending.expires_at_datetime
    assert (when.isoformat() if when is not None else None) == expected
    assert when is None or when.utcoffset() is not None
