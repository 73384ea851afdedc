"""Pure helpers that make server-chosen text safe to show a person."""

from __future__ import annotations

import re
from typing import Union

__all__ = ["for_terminal", "snippet"]

# C0 and C1 controls (ESC, CSI, BEL, ...) and the bidi marks and overrides that reorder
# what a terminal shows; tab and newline are folded to spaces for one-line messages.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_SPACES = re.compile(r"\s+")


def for_terminal(text: str, limit: int = 500) -> str:
    """Returns text with control and escape characters removed, one line, bounded."""
    clean = _SPACES.sub(" ", _UNSAFE.sub(" ", text)).strip()
    if len(clean) > limit:
        clean = clean[: limit - 1] + "…"
    return clean


def snippet(body: Union[bytes, str], limit: int = 200) -> str:
    """Returns a short, printable excerpt of a response body (HTML tags removed)."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = re.sub(r"<[^>]{0,2000}>", " ", text[: limit * 20])
    return for_terminal(text, limit) or "(empty body)"
