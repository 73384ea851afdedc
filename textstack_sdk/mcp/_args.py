"""Tool arguments read by the rules of TextStack's .NET MCP tool; pure.

The .NET tool validates every call by hand (its SDK does not enforce ``inputSchema``),
and a drop-in must refuse exactly what it refuses, with the same texts:

* JSON ``null`` is not "absent": an optional argument present as null is refused.
* Integers are JSON integers that fit Int32; ``5.0``, ``"5"`` and ``true`` are not.
* String lengths are UTF-16 code units, as .NET counts them (an emoji counts 2).
  Strings are not trimmed.
* UUIDs are what ``Guid.TryParse`` accepts (hyphenated, 32 hex digits, ``{...}``,
  ``(...)`` and the ``{0x...}`` form, surrounding whitespace allowed) and come out
  lowercase and hyphenated.

Every check raises ``ArgumentRefused`` carrying the model-facing text; nothing else
escapes, whatever the input.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Optional

from .._errors import TextStackError

__all__ = [
    "ABSENT",
    "COLORS",
    "INT32_MAX",
    "INT32_MIN",
    "Args",
    "ArgumentRefused",
    "is_dotnet_blank",
    "parse_guid",
    "utf16_len",
]

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
COLORS = ("yellow", "green", "blue", "pink")
_COLOR_MAX = 20

# char.IsWhiteSpace: Unicode Zs, Zl, Zp plus U+0009..U+000D and U+0085 (str.isspace
# differs: it also counts U+001C..U+001F).
DOTNET_WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)

_HEX = frozenset("0123456789abcdefABCDEF")
_D_HYPHENS = (8, 13, 18, 23)


class _Absent:
    """The type of ``ABSENT``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()
"""``params.arguments`` of a ``tools/call`` that has no ``arguments`` member.

The JSON ``null`` of a present member is None, and the .NET tool refuses it; a missing
member reads as ``{}`` (which MCP_SERVER.md allows a drop-in, where .NET refuses it too).
"""


class ArgumentRefused(TextStackError):
    """A tool argument breaks the .NET tool's rules; ``text`` is the exact refusal."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units (.NET ``string.Length``); a lone surrogate counts 1."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def is_dotnet_blank(text: Optional[str]) -> bool:
    """``string.IsNullOrWhiteSpace`` with .NET's idea of whitespace."""
    return text is None or not text.strip(DOTNET_WHITESPACE)


def parse_guid(value: str) -> Optional[str]:
    """The GUID ``Guid.TryParse`` would read, as lowercase hyphenated text; None if none.

    A port of .NET's parser, quirks included: the form is chosen by the first character
    (and where the first hyphen is), the hyphenated forms fall back to letting each
    component but the last eight digits start with ``+`` and/or ``0x``, and the
    ``{0x...}`` form ignores whitespace anywhere and keeps the low 16 bits of its shorts.
    """
    text = value.strip(DOTNET_WHITESPACE)
    if len(text) < 32:
        return None
    if text[0] == "(":
        return _parse_d(text[1:-1]) if len(text) == 38 and text[-1] == ")" else None
    if text[0] == "{":
        if text[9] != "-":
            return _parse_x("".join(ch for ch in text if ch not in DOTNET_WHITESPACE))
        return _parse_d(text[1:-1]) if len(text) == 38 and text[-1] == "}" else None
    if text[8] == "-":
        return _parse_d(text)
    return _as_guid(text) if len(text) == 32 and _HEX.issuperset(text) else None


def _as_guid(hex32: str) -> str:
    return str(uuid.UUID(hex=hex32))


def _hex(text: str) -> Optional[int]:
    """Guid's ``TryParseHex``: an optional ``+``, an optional ``0x``, at most 8 digits."""
    if text[:1] == "+":
        text = text[1:]
    if text[:2] in ("0x", "0X"):
        text = text[2:]
    digits = text.lstrip("0")
    if len(digits) > 8 or not _HEX.issuperset(digits):
        return None
    return int(digits, 16) if digits else 0


def _parse_d(text: str) -> Optional[str]:
    if len(text) != 36 or any(text[i] != "-" for i in _D_HYPHENS):
        return None
    digits = text.replace("-", "")
    if len(digits) == 32 and _HEX.issuperset(digits):
        return _as_guid(digits)
    if not any(ch in "xX+" for ch in text):
        return None
    # The compat path: components read as numbers within their widths; the last eight
    # digits never took a prefix.
    parts = [
        _hex(text[at : at + width]) for at, width in ((0, 8), (9, 4), (14, 4), (19, 4), (24, 4))
    ]
    tail = text[28:]
    if any(part is None for part in parts) or not _HEX.issuperset(tail):
        return None
    a, b, c, d, e = (p or 0 for p in parts)
    return _as_guid(f"{a:08x}{b:04x}{c:04x}{d:04x}{e:04x}{tail}")


def _next(text: str, start: int, mark: str) -> int:
    """How far past ``start`` the next ``mark`` is (.NET ``Slice(start).IndexOf``)."""
    found = text.find(mark, start)
    return -1 if found < 0 else found - start


def _hex_prefix(text: str, at: int) -> bool:
    return at + 1 < len(text) and text[at] == "0" and text[at + 1] in "xX"


def _parse_x(text: str) -> Optional[str]:
    """``{0xAAAAAAAA,0xBBBB,0xCCCC,{0xDD,...8 bytes}}``, walked as ``TryParseExactX`` does."""
    if not text.startswith("{"):
        return None
    numbers: list[int] = []
    at, width = 0, 0  # so that the first "0x" is looked for at 1 and its number starts at 3
    for _ in range(3):
        if not _hex_prefix(text, at + width + 1):
            return None
        at = at + width + 3
        width = _next(text, at, ",")
        number = _hex(text[at : at + width]) if width > 0 else None
        if number is None:
            return None
        numbers.append(number)
    if len(text) <= at + width + 1 or text[at + width + 1] != "{":
        return None
    width += 1
    octets: list[int] = []
    for index in range(8):
        if not _hex_prefix(text, at + width + 1):
            return None
        at = at + width + 3
        width = _next(text, at, "," if index < 7 else "}")
        octet = _hex(text[at : at + width]) if width > 0 else None
        if octet is None or octet > 255:
            return None
        octets.append(octet)
    end = at + width + 1
    if end != len(text) - 1 or text[end] != "}":
        return None
    a, b, c = numbers[0], numbers[1] & 0xFFFF, numbers[2] & 0xFFFF
    return _as_guid(f"{a:08x}{b:04x}{c:04x}" + "".join(f"{o:02x}" for o in octets))


class Args:
    """The arguments of one tool call. Not thread-safe; one per call.

    Args:
        arguments: ``params.arguments`` as parsed JSON (None is a JSON ``null``, refused
            like any other non-object), or ``ABSENT`` (no member: read as ``{}``).
        allowed: The tool's argument names; any other key is refused.

    Raises:
        ArgumentRefused: Not an object, or an unknown key.
    """

    def __init__(self, arguments: object, allowed: Sequence[str]) -> None:
        if arguments is ABSENT:
            arguments = {}
        if not isinstance(arguments, Mapping):
            raise ArgumentRefused("Arguments must be an object.")
        for key in arguments:
            if key not in allowed:
                raise ArgumentRefused(f"Unknown argument '{key}'.")
        self._values: Mapping[str, Any] = arguments

    def has(self, name: str) -> bool:
        """Whether the argument is present (a JSON null counts as present)."""
        return name in self._values

    def raw(self, name: str) -> Any:
        """The argument as sent, unchecked; None when absent."""
        return self._values.get(name)

    def required_string(self, name: str, minimum: int, maximum: int) -> str:
        """A string of ``minimum..maximum`` UTF-16 units."""
        value = self._values.get(name)
        if not isinstance(value, str):
            raise ArgumentRefused(f"'{name}' is required and must be a string.")
        if not minimum <= utf16_len(value) <= maximum:
            raise ArgumentRefused(f"'{name}' must be between {minimum} and {maximum} characters.")
        return value

    def optional_string(self, name: str, maximum: int) -> Optional[str]:
        """A string of at most ``maximum`` UTF-16 units, or None when absent."""
        if name not in self._values:
            return None
        value = self._values[name]
        if not isinstance(value, str):
            raise ArgumentRefused(f"'{name}' must be a string.")
        if utf16_len(value) > maximum:
            raise ArgumentRefused(f"'{name}' must be at most {maximum} characters.")
        return value

    def required_uuid(self, name: str) -> str:
        """A GUID, lowercase hyphenated."""
        value = self._values.get(name)
        parsed = parse_guid(value) if isinstance(value, str) else None
        if parsed is None:
            raise ArgumentRefused(f"'{name}' is required and must be a UUID.")
        return parsed

    def optional_uuid(self, name: str) -> Optional[str]:
        """A GUID, lowercase hyphenated, or None when absent."""
        if name not in self._values:
            return None
        value = self._values[name]
        parsed = parse_guid(value) if isinstance(value, str) else None
        if parsed is None:
            raise ArgumentRefused(f"'{name}' must be a UUID.")
        return parsed

    def optional_int(self, name: str, minimum: int, maximum: int) -> Optional[int]:
        """A JSON integer within Int32 and ``minimum..maximum``, or None when absent."""
        if name not in self._values:
            return None
        value = self._values[name]
        # type() rather than isinstance: bool is an int subclass, and true is not 1 here.
        if type(value) is not int or not INT32_MIN <= value <= INT32_MAX:
            raise ArgumentRefused(f"'{name}' must be an integer.")
        if not minimum <= value <= maximum:
            raise ArgumentRefused(f"'{name}' must be between {minimum} and {maximum}.")
        return value

    def color(self) -> str:
        """The highlight colour: absent means yellow; otherwise one of ``COLORS``."""
        value = self.optional_string("color", _COLOR_MAX)
        if value is None:
            return COLORS[0]
        if value not in COLORS:
            raise ArgumentRefused(f"'color' must be one of: {', '.join(COLORS)}.")
        return value

    def one_book(self) -> tuple[Optional[str], Optional[str]]:
        """Exactly one of ``bookId`` (an upload) or ``editionId`` (a catalog book).

        Returns:
            ``(edition_id, book_id)``, one of them None.
        """
        book_id = self.optional_uuid("bookId")
        edition_id = self.optional_uuid("editionId")
        if (book_id is None) == (edition_id is None):
            text = "Pass either 'bookId' (an uploaded book) or 'editionId' (a catalog book)"
            raise ArgumentRefused(text + (", not both." if book_id is not None else "."))
        return edition_id, book_id
