"""The pending sign-in shared by processes through a file beside the token cache. Pure.

One process requests the device code and writes this record (owner-only: it holds the
device code); every other process adopts it instead of requesting its own, so the person
sees ONE user code. The poller writes the terminal outcome into the record so that the
processes watching it stop for the same reason; tokens themselves travel through the
token cache.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Optional

from ._jwt import MAX_TOKEN_LENGTH
from ._models import DeviceAuthorization
from ._wire import MAX_CODE_LIFETIME, MAX_INTERVAL

__all__ = ["SharedFlow", "decode", "encode", "with_outcome"]

_VERSION = 1


@dataclass(frozen=True)
class SharedFlow:
    """A decoded record. Immutable.

    Attributes:
        auth: The device authorization (its ``interval`` is the poller's current one).
        expires_at: Wall-clock expiry of the code.
        server: ``api_url host`` of the server the code belongs to.
        outcome: How the sign-in ended, once it has.
        message: Why, for a person.
    """

    auth: DeviceAuthorization
    expires_at: float
    server: str = ""
    outcome: Optional[str] = None
    message: Optional[str] = None


def encode(auth: DeviceAuthorization, expires_at: float, server: str) -> dict[str, object]:
    """The record for a new sign-in against ``server`` (``api_url`` and site host)."""
    return {
        "version": _VERSION,
        "server": server,
        "deviceCode": auth.device_code,
        "userCode": auth.user_code,
        "verificationUri": auth.verification_uri,
        "verificationUriComplete": auth.verification_uri_complete,
        "expiresAt": expires_at,
        "interval": auth.interval,
        "outcome": None,
        "message": None,
    }


def with_outcome(record: Mapping[str, object], kind: str, message: str) -> dict[str, object]:
    """The same record, marked as ended (``denied``, ``expired``, ``failed``)."""
    return {**record, "outcome": kind, "message": message[:300]}


def _text(record: Mapping[str, object], key: str, limit: int = 2048) -> Optional[str]:
    value = record.get(key)
    return value if isinstance(value, str) and 0 < len(value) <= limit else None


def _number(record: Mapping[str, object], key: str) -> Optional[float]:
    value = record.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) and number > 0 else None


def decode(record: object, now: float, *, allow_expired: bool = False) -> Optional[SharedFlow]:
    """Reads a record written by ``encode``; None when malformed (or expired, unless allowed).

    Args:
        record: The parsed JSON.
        now: Wall-clock seconds.
        allow_expired: Return an expired record too (a watcher tells "expired" from
            "cancelled"; an adopter wants only a live one).
    """
    if not isinstance(record, dict) or record.get("version") != _VERSION:
        return None
    device_code = _text(record, "deviceCode", MAX_TOKEN_LENGTH)
    user_code = _text(record, "userCode", 64)
    uri = _text(record, "verificationUri")
    expires_at = _number(record, "expiresAt")
    interval = _number(record, "interval")
    if not (device_code and user_code and uri and expires_at and interval):
        return None
    lifetime = expires_at - now
    if lifetime > MAX_CODE_LIFETIME or (lifetime <= 0 and not allow_expired):
        return None
    outcome = record.get("outcome")
    message = record.get("message")
    server = record.get("server")
    auth = DeviceAuthorization(
        device_code=device_code,
        user_code=user_code,
        verification_uri=uri,
        verification_uri_complete=_text(record, "verificationUriComplete"),
        expires_in=max(lifetime, 0.0),
        interval=min(interval, MAX_INTERVAL),
    )
    return SharedFlow(
        auth=auth,
        expires_at=expires_at,
        server=server if isinstance(server, str) else "",
        outcome=outcome if isinstance(outcome, str) else None,
        message=message if isinstance(message, str) else None,
    )
