"""Tool results as the .NET tool renders them; pure.

A result is one text block: compact JSON with camelCase names, ``null`` members kept,
whole doubles written without ``.0`` and dates as ISO 8601 with their offset, the way
``System.Text.Json`` writes them. Chapter HTML becomes plain text by
``HtmlText.StripAndCap``'s steps.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from html.entities import name2codepoint
from typing import Any, Optional

from ._args import DOTNET_WHITESPACE, utf16_len

__all__ = ["CHAPTER_TEXT_LIMIT", "dotnet_datetime", "strip_and_cap", "to_json", "wire_safe"]

CHAPTER_TEXT_LIMIT = 40_000
"""UTF-16 units of chapter text a tool returns before it cuts and says ``truncated``."""

# HtmlText's loop: '<' opens a tag (dropped up to its '>'), and every '>' becomes one
# space, whether it closes a tag or stands alone in the text.
_TAG_OR_GT = re.compile(r"<[^>]*>|>")
# WebUtility.HtmlDecode reads '&' up to the first ';' (an '&' first means no entity).
_ENTITY = re.compile(r"&([^;&]*);")
_SPACES = re.compile(f"[{DOTNET_WHITESPACE}]+")
_SURROGATE = re.compile("[\ud800-\udfff]")
# WebUtility.HtmlDecode knows the HTML 4 entities (plus &apos;).
_NAMED = {**name2codepoint, "apos": 0x27}
_MAX_CODE_POINT = 0x10FFFF
_HEX = frozenset("0123456789abcdefABCDEF")
_NUMBER = re.compile(r"[ \t\n\v\f\r]*([+-]?)([0-9]+)[ \t\n\v\f\r]*")
_UINT32_DIGITS = 10


def _uint(text: str) -> Optional[int]:
    """``uint.TryParse``: hex (``AllowHexSpecifier``) after an ``x``, else ``Integer``."""
    if text[0] in "xX":
        digits = text[1:]
        if not digits or not _HEX.issuperset(digits):
            return None
        base = 16
    else:
        found = _NUMBER.fullmatch(text)
        if found is None:
            return None
        sign, digits = found.groups()
        if sign == "-" and digits.strip("0"):
            return None
        base = 10
    # Bounded before int(): a 5,000-digit reference must not cost a bignum parse.
    if len(digits.lstrip("0")) > _UINT32_DIGITS:
        return None
    value = int(digits, base)
    return value if value <= 0xFFFFFFFF else None


def _entity(found: re.Match[str]) -> str:
    body = found.group(1)
    if len(body) > 1 and body[0] == "#":
        code = _uint(body[1:])
        # U+0000..U+10FFFF, surrogates excluded; anything else stays as written.
        if code is not None and (code < 0xD800 or 0xDFFF < code <= _MAX_CODE_POINT):
            return chr(code)
        return found.group(0)
    named = _NAMED.get(body)
    return found.group(0) if named is None else chr(named)


def strip_and_cap(html: str, limit: int = CHAPTER_TEXT_LIMIT) -> tuple[str, bool]:
    """Chapter HTML as plain text, at most ``limit`` UTF-16 units.

    Tags become one space each (as does any other ``>``; an unclosed ``<`` drops the rest),
    *then* entities are decoded (so ``&lt;b&gt;`` stays as
    literal ``<b>``), whitespace runs collapse to one space and the ends are trimmed.
    A longer text is cut at ``limit`` units and trimmed at its end again.

    Returns:
        ``(text, truncated)``.
    """
    text = _TAG_OR_GT.sub(" ", html)
    # What is left of a '<' never closed: .NET drops it all, to the end.
    opened = text.find("<")
    if opened >= 0:
        text = text[:opened]
    text = _ENTITY.sub(_entity, text)
    text = _SPACES.sub(" ", text).strip(DOTNET_WHITESPACE)
    if len(text) <= limit // 2 or utf16_len(text) <= limit:
        return text, False
    units = text.encode("utf-16-le", "surrogatepass")[: 2 * limit]
    # A cut through a surrogate pair leaves its high half, as Substring does.
    cut = units.decode("utf-16-le", "surrogatepass")
    return cut.rstrip(DOTNET_WHITESPACE), True


def dotnet_datetime(moment: datetime) -> str:
    """``2026-11-28T10:15:00+00:00``; a fraction keeps its significant digits only."""
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    offset = moment.strftime("%z")
    if offset:
        text += f"{offset[:3]}:{offset[3:5]}"
    return text


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return dotnet_datetime(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def to_json(value: Any) -> str:
    """Compact JSON of a result: nulls kept, non-ASCII as is, ``1.0`` as ``1``."""
    return wire_safe(
        json.dumps(_plain(value), separators=(",", ":"), ensure_ascii=False, allow_nan=False),
        value_is_json=True,
    )


def wire_safe(text: str, *, value_is_json: bool = False) -> str:
    """A text that can be written as UTF-8.

    A lone surrogate (from a ``\\ud800`` escape in the arguments, or a cut through an
    emoji) cannot be; JSON text gets it escaped as ``\\uXXXX`` (what .NET writes),
    plain text a U+FFFD in its place.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        if value_is_json:
            return json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=True)
        return _SURROGATE.sub("\ufffd", text)
    return text
