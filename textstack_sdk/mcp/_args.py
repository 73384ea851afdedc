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

import re
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

_H = "[0-9A-Fa-f]"
_D = f"({_H}{{8}})-({_H}{{4}})-({_H}{{4}})-({_H}{{4}})-({_H}{{12}})"
_GUID_D = re.compile(_D)
_GUID_N = re.compile(f"{_H}{{32}}")
_GUID_B = re.compile(r"\{" + _D + r"\}")
_GUID_P = re.compile(r"\(" + _D + r"\)")


def _x(width: int) -> str:
    # Guid.TryParse skips leading zeros of each 0x number before counting its digits.
    return f"0[xX]0*({_H}{{1,{width}}})"


_GUID_X = re.compile(
    r"\{" + ",".join((_x(8), _x(4), _x(4))) + r",\{" + ",".join([_x(2)] * 8) + r"\}\}"
)
_ANY_SPACE = re.compile(f"[{DOTNET_WHITESPACE}]")


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
    """The GUID ``Guid.TryParse`` would read, as lowercase hyphenated text; None if none."""
    text = value.strip(DOTNET_WHITESPACE)
    if _GUID_N.fullmatch(text):
        return str(uuid.UUID(hex=text))
    found = _GUID_D.fullmatch(text) or _GUID_B.fullmatch(text) or _GUID_P.fullmatch(text)
    if found:
        return str(uuid.UUID(hex="".join(found.groups())))
    # The {0x...} form tolerates whitespace anywhere inside, as .NET strips it all first.
    found = _GUID_X.fullmatch(_ANY_SPACE.sub("", text)) if text.startswith("{") else None
    if found:
        widths = (8, 4, 4) + (2,) * 8
        digits = "".join(g.rjust(w, "0") for g, w in zip(found.groups(), widths))
        return str(uuid.UUID(hex=digits))
    return None


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
