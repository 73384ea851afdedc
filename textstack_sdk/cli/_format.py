"""Pure formatting for the ``textstack`` command: tables, JSON, chapter text, times.

Every server-chosen string that reaches a terminal passes through ``_text.for_terminal``
(or ``clean_lines`` for multi-line text, which applies it line by line); JSON output
escapes the C1 controls and bidi overrides that ``json.dumps`` leaves raw.

Every command module imports this one, ``textstack token`` included, so the modules
only some helpers need (json, html, dataclasses, datetime, the API models) are
imported inside those helpers.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Optional

from .._errors import FieldError
from .._text import for_terminal

__all__ = [
    "EMPTY",
    "clean_lines",
    "describe_expiry",
    "html_to_text",
    "page_footer",
    "render_table",
    "to_json",
    "to_jsonable",
]

_MAX_CELL = 60
# The one word every command prints for an empty result.
EMPTY = "(none)"
# What json.dumps(ensure_ascii=False) leaves raw but a terminal would act on. C0
# controls are always escaped by json.dumps; only these can appear raw, and only
# inside strings, so escaping them keeps the document valid and its data exact.
_JSON_UNSAFE = "[\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]"


def cell(value: object, limit: int = _MAX_CELL) -> str:
    """One table cell: empty for None, datetimes as local ISO minutes, text sanitised."""
    import datetime as dt

    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.astimezone().strftime("%Y-%m-%d %H:%M")
    if isinstance(value, float):
        text = f"{value:.1f}" if not value.is_integer() else str(int(value))
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    else:
        text = str(value)
    return for_terminal(text, limit)


def render_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A plain-text table with a header row; cells are sanitised and bounded."""
    body = [[cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in body:
        for i, text in enumerate(row):
            widths[i] = max(widths[i], len(text))
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines.extend("  ".join(t.ljust(w) for t, w in zip(row, widths)).rstrip() for row in body)
    if not body:
        lines.append(EMPTY)
    return "\n".join(lines)


def page_footer(shown: int, total: int, noun: str, *, offset: Optional[int] = None) -> str:
    """The footer of a paged list: ``3 of 10 words``, and how to get the next page.

    Args:
        offset: The offset of this page when the command takes ``--offset``.
    """
    first = (offset or 0) + 1
    where = f" ({first}-{first + shown - 1})" if offset and shown else ""
    text = f"{shown} of {total} {noun}{where}"
    if offset is not None and (offset or 0) + shown < total and shown:
        text += f"; next page: --offset {(offset or 0) + shown}"
    return text


def render_fields(pairs: Iterable[tuple[str, object]]) -> str:
    """``name: value`` lines, aligned; values sanitised, empty ones left out."""
    shown = [(name, cell(value, 300)) for name, value in pairs]
    shown = [(name, text) for name, text in shown if text]
    width = max((len(name) for name, _ in shown), default=0)
    return "\n".join(f"{(name + ':').ljust(width + 1)} {text}" for name, text in shown)


def to_jsonable(value: Any) -> Any:
    """Results as plain JSON values: dataclasses as dicts, datetimes as ISO strings."""
    import dataclasses
    import datetime as dt

    from .._api_models import JsonObject

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, JsonObject):
        return value.to_dict()
    if isinstance(value, FieldError):
        return {"path": value.path, "code": value.code, "message": value.message}
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    return value


def to_json(value: Any) -> str:
    """Indented JSON of a result, safe to print to a terminal."""
    import json

    text = json.dumps(to_jsonable(value), indent=2, ensure_ascii=False, allow_nan=False)
    return re.sub(_JSON_UNSAFE, lambda m: f"\\u{ord(m.group()):04x}", text)


def clean_lines(text: str, width: Optional[int] = None) -> str:
    """Multi-line text made safe line by line; long lines wrapped to ``width``."""
    out: list[str] = []
    for line in text.splitlines():
        clean = for_terminal(line, limit=max(1, len(line)))
        if width and len(clean) > width:
            import textwrap

            out.extend(textwrap.wrap(clean, width) or [""])
        else:
            out.append(clean)
    return "\n".join(out)


_BLOCKS = frozenset(
    [
        "p",
        "div",
        "br",
        "li",
        "ul",
        "ol",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "blockquote",
        "pre",
        "section",
        "article",
        "tr",
        "hr",
    ]
)


@functools.cache
def _extractor_class() -> Any:
    """The HTML-to-text parser class, built on first use (html.parser is not cheap)."""
    from html.parser import HTMLParser

    class _TextExtractor(HTMLParser):
        def __init__(self) -> None:
            super().__init__(convert_charrefs=True)
            self.parts: list[str] = []
            self._skip = 0

        def handle_starttag(self, tag: str, attrs: list[tuple[str, Optional[str]]]) -> None:
            if tag in ("script", "style"):
                self._skip += 1
            elif tag in _BLOCKS:
                self.parts.append("\n")
                if tag == "li":
                    self.parts.append("• ")

        def handle_endtag(self, tag: str) -> None:
            if tag in ("script", "style"):
                self._skip = max(0, self._skip - 1)
            elif tag in _BLOCKS:
                self.parts.append("\n")

        def handle_data(self, data: str) -> None:
            if not self._skip:
                self.parts.append(data)

    return _TextExtractor


def html_to_text(markup: str) -> str:
    """Readable paragraphs from chapter HTML: tags dropped, entities decoded."""
    import html

    parser = _extractor_class()()
    try:
        parser.feed(markup)
        parser.close()
        text = "".join(parser.parts)
    except Exception:  # noqa: BLE001 - malformed markup still yields something readable
        text = html.unescape(re.sub(r"<[^>]{0,2000}>", " ", markup))
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n|\n", text)]
    return "\n\n".join(p for p in paragraphs if p)


def _span(seconds: float) -> str:
    seconds = int(abs(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def describe_expiry(exp: Optional[float], now: float) -> Optional[str]:
    """``2024-05-01T12:00:00+02:00 (in 14m 3s)`` or ``(... ago)``; None when unknown."""
    if exp is None:
        return None
    import datetime as dt

    when = (
        dt.datetime.fromtimestamp(exp, dt.timezone.utc).astimezone().isoformat(timespec="seconds")
    )
    left = exp - now
    return f"{when} ({'in ' + _span(left) if left >= 0 else _span(left) + ' ago'})"


def iso_utc(exp: Optional[float]) -> Optional[str]:
    """A Unix time as an ISO 8601 UTC string, for JSON."""
    if exp is None:
        return None
    import datetime as dt

    return dt.datetime.fromtimestamp(exp, dt.timezone.utc).isoformat(timespec="seconds")
