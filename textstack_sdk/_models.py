"""Frozen values of the token layer. None of their reprs shows a secret."""

from __future__ import annotations

import html
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
            f"authentication required — open {for_terminal(self.verification_uri)} and enter "
            f"code {for_terminal(self.user_code)} to connect TextStack, then retry."
        )

    @property
    def link(self) -> str:
        """The best URL to open, the one with the code filled in when the server gave it."""
        return self.verification_uri_complete or self.verification_uri

    def __str__(self) -> str:
        return self.message

    def _repr_html_(self) -> str:
        href = self.link
        safe_href = html.escape(href if _is_web_url(href) else "#", quote=True)
        return (
            '<div class="textstack-login">'
            "<b>TextStack sign-in required.</b> "
            f'Open <a href="{safe_href}" target="_blank" rel="noopener noreferrer">'
            f"{html.escape(for_terminal(self.verification_uri))}</a> and enter the code "
            f'<code style="font-size:1.2em">{html.escape(for_terminal(self.user_code))}</code>'
            ", then run the cell again.</div>"
        )

    def _repr_markdown_(self) -> str:
        uri = for_terminal(self.link).replace(")", "%29").replace(" ", "%20")
        code = for_terminal(self.user_code).replace("`", "")
        shown = for_terminal(self.verification_uri).replace("]", "")
        return (
            f"**TextStack sign-in required.** Open [{shown}]({uri}) and enter the code "
            f"`{code}`, then run the cell again."
        )


def _is_web_url(url: str) -> bool:
    lowered = url.strip().lower()
    return lowered.startswith("https://") or lowered.startswith("http://")


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
