"""Frozen values of the token layer. None of their reprs shows a secret."""

from __future__ import annotations

import datetime
import html
import re
from dataclasses import dataclass, field
from typing import Optional, Union

from ._text import for_terminal

__all__ = [
    "Authorized",
    "DeviceAuthorization",
    "Failed",
    "Pending",
    "TokenResult",
    "TokenSet",
]


@dataclass(frozen=True)
class Authorized:
    """A usable bearer token. Immutable, so safe to share between threads."""

    access_token: str = field(repr=False)

    def __repr__(self) -> str:
        return "Authorized(access_token=<redacted>)"

    __str__ = __repr__


@dataclass(frozen=True)
class Pending:
    """A login is waiting for a person to approve it. Immutable; thread-safe.

    Holds nothing secret: the user code is meant to be shown; the device code never
    leaves the token manager.
    """

    verification_uri: str
    user_code: str
    verification_uri_complete: Optional[str] = None
    expires_at: Optional[float] = None

    @property
    def message(self) -> str:
        """The actionable one-line message the person should see."""
        return (
            f"authentication required — open {_text(self.verification_uri)} and enter "
            f"code {_text(self.user_code)} to connect TextStack, then retry."
        )

    @property
    def expires_at_datetime(self) -> Optional[datetime.datetime]:
        """``expires_at`` as an aware UTC ``datetime`` (None when unknown or unreadable).

        The token layer keeps times as Unix seconds (``expires_at``), as the contract
        fixes; API results carry ``datetime`` values. This twin serves code that wants those.
        """
        return _utc(self.expires_at)

    @property
    def link(self) -> str:
        """The best URL to open, the one with the code filled in when the server gave it."""
        return self.verification_uri_complete or self.verification_uri

    def __str__(self) -> str:
        return self.message

    # Callers may build a Pending from anything, so both renderings below assume nothing
    # about its fields: every field is made one safe line first, only an http(s) URL
    # becomes a link, and each output context (HTML attribute, HTML text, Markdown link
    # target, Markdown text) gets its own escaping.

    def _repr_html_(self) -> str:
        href = _web_url(self.link)
        shown = html.escape(_text(self.verification_uri), quote=True)
        place = (
            f'<a href="{html.escape(href, quote=True)}" target="_blank" '
            f'rel="noopener noreferrer">{shown}</a>'
            if href is not None
            else shown
        )
        return (
            '<div class="textstack-login">'
            f"<b>TextStack sign-in required.</b> Open {place} and enter the code "
            f'<code style="font-size:1.2em">{html.escape(_text(self.user_code), quote=True)}'
            "</code>, then run the cell again.</div>"
        )

    def _repr_markdown_(self) -> str:
        href = _web_url(self.link)
        shown = _markdown_text(_text(self.verification_uri))
        place = f"[{shown}](<{_markdown_href(href)}>)" if href is not None else shown
        return (
            f"**TextStack sign-in required.** Open {place} and enter the code "
            f"{_markdown_text(_text(self.user_code))}, then run the cell again."
        )


def _utc(seconds: object) -> Optional[datetime.datetime]:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        return None
    try:
        return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def _text(value: object) -> str:
    """Any field value as one line without control characters (C0, C1, bidi)."""
    return for_terminal(value if isinstance(value, str) else str(value))


def _web_url(value: object) -> Optional[str]:
    """The value when it is a plain http(s) URL with a host, else None (never linked)."""
    if not isinstance(value, str):
        return None
    url = _text(value)
    if url != value or " " in url or not _WEB_URL.match(url):
        return None
    return url


def _markdown_text(text: str) -> str:
    # Markdown renderers pass raw HTML through, so HTML-escape first, then neutralise
    # every Markdown punctuation mark with a backslash.
    return _MARKDOWN_SPECIAL.sub(r"\\\g<0>", html.escape(text, quote=True))


def _markdown_href(url: Optional[str]) -> str:
    # Inside <...> only <, > and newlines end the target; percent-encode what remains risky.
    return (url or "").translate(_HREF_ESCAPES)


_WEB_URL = re.compile(r"https?://[^/?#\s]+", re.IGNORECASE)
_MARKDOWN_SPECIAL = re.compile(r"[\\`*_{}\[\]()<>#+!|~:-]")
_HREF_ESCAPES = str.maketrans(
    {"<": "%3C", ">": "%3E", " ": "%20", "(": "%28", ")": "%29", '"': "%22", "\\": "%5C"}
)


@dataclass(frozen=True)
class Failed:
    """No token, and no login in progress. Immutable; thread-safe.

    Attributes:
        message: Why; never contains a secret.
        retryable: True when trying again later may succeed (network, server trouble).
    """

    message: str
    retryable: bool = False


TokenResult = Union[Authorized, Pending, Failed]


@dataclass(frozen=True)
class TokenSet:
    """One generation of tokens: an access token and the refresh token that came with it.

    Immutable: a refresh builds a new TokenSet, so a reader never sees an access token
    and a refresh token of different generations. ``access_exp`` is the JWT ``exp``
    decoded once when the set was built (None when unreadable).
    """

    access_token: str = field(repr=False)
    refresh_token: Optional[str] = field(repr=False, default=None)
    access_exp: Optional[float] = None

    def __repr__(self) -> str:
        has_refresh = "yes" if self.refresh_token else "no"
        return (
            f"TokenSet(access_token=<redacted>, refresh_token=<{has_refresh}>, "
            f"access_exp={self.access_exp!r})"
        )


@dataclass(frozen=True)
class DeviceAuthorization:
    """The answer to ``POST /auth/device/code``. The device code is a secret."""

    device_code: str = field(repr=False)
    user_code: str
    verification_uri: str
    verification_uri_complete: Optional[str]
    expires_in: float
    interval: float

    def __repr__(self) -> str:
        return (
            f"DeviceAuthorization(device_code=<redacted>, user_code={self.user_code!r}, "
            f"verification_uri={self.verification_uri!r}, expires_in={self.expires_in!r}, "
            f"interval={self.interval!r})"
        )
