"""Reads a JWT's ``exp`` without verifying it (the server verifies on use). Pure.

The decoder never raises: anything it cannot read is "unknown" (None), which the
token manager treats as expired, with a rate limit so that an unreadable exp never
causes a refresh per call.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from typing import Any, Optional

__all__ = ["MAX_TOKEN_LENGTH", "decode_exp", "decode_subject", "is_bearer_token"]

MAX_TOKEN_LENGTH = 16 * 1024
# RFC 6750 §2.1 b64token: what may follow "Bearer " without breaking the header.
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_NUMERIC = re.compile(r"[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_B64URL_SEGMENT = re.compile(r"[A-Za-z0-9_-]*")
# A year 10000 exp is already nonsense; anything larger is treated as unreadable.
_MAX_EXP = 253402300799.0


def is_bearer_token(value: object) -> bool:
    """True when value is a non-empty string of RFC 6750 token characters, bounded."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_TOKEN_LENGTH
        and _B64TOKEN.fullmatch(value) is not None
    )


def _payload(token: object) -> Optional[dict[str, Any]]:
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
        return None
    parts = token.split(".")
    if len(parts) != 3 or not parts[1] or _B64URL_SEGMENT.fullmatch(parts[1]) is None:
        return None
    segment = parts[1]
    if len(segment) % 4 == 1:
        return None
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        payload = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, RecursionError):
        return None
    return payload if isinstance(payload, dict) else None


def decode_exp(token: object) -> Optional[float]:
    """Returns the ``exp`` claim of a compact JWS as Unix seconds, or None if unreadable.

    Args:
        token: The access token. Anything that is not a three-segment compact JWT with
            a base64url JSON-object payload whose ``exp`` is a finite number (not a
            bool) or a numeric string gives None.
    """
    payload = _payload(token)
    return None if payload is None else _as_exp(payload.get("exp"))


def decode_subject(token: object) -> Optional[str]:
    """Who the token says it belongs to (``email``, else ``sub``), for display only."""
    payload = _payload(token)
    if payload is None:
        return None
    for claim in ("email", "sub"):
        value = payload.get(claim)
        if isinstance(value, str) and value.strip():
            return value.strip()[:200]
    return None


def _as_exp(value: object) -> Optional[float]:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        # ASCII decimal only: float() would also take "1_000", "inf" and other scripts' digits.
        if len(text) > 32 or _NUMERIC.fullmatch(text) is None:
            return None
        value = float(text)
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:
            return None
        if math.isfinite(number) and 0 <= number <= _MAX_EXP:
            return number
    return None
