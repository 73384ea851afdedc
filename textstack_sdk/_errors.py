"""Every exception the SDK raises on purpose has one root.

    TextStackError
    ├── ConfigurationError        bad settings (e.g. plain http:// to a non-loopback host)
    ├── CacheDecryptionError      an encrypted token store cannot be decrypted (.key_id)
    ├── TransportError            the network failed: connect, timeout, reset, oversize body
    ├── ApiError                  a non-2xx answer (.status, .message, .route)
    │   └── ProtocolError         an answer that breaks the wire contract (HTML, wrong JSON)
    ├── AuthorizationRequired     a user-scoped call had no usable token; nothing was sent
    └── AuthorizationError        the device flow ended without tokens
        ├── AuthorizationDenied   the person said no (access_denied)
        ├── AuthorizationExpired  the code expired before approval (expired_token, lifetime)
        └── AuthorizationTimeout  wait_for_token() ran out of time

Messages never carry a secret: builders of these errors pass only server-chosen error
codes, sanitised snippets and routes, never headers or auth bodies.
"""

from __future__ import annotations

from typing import Optional

__all__ = [
    "ApiError",
    "AuthorizationDenied",
    "AuthorizationError",
    "AuthorizationExpired",
    "AuthorizationRequired",
    "AuthorizationTimeout",
    "CacheDecryptionError",
    "ConfigurationError",
    "FieldError",
    "ProtocolError",
    "TextStackError",
    "TransportError",
]


class TextStackError(Exception):
    """Root of every exception raised on purpose by textstack_sdk."""


class ConfigurationError(TextStackError):
    """The settings cannot work (bad URL, unsafe scheme, out-of-range option)."""


class CacheDecryptionError(TextStackError):
    """A stored token record cannot be decrypted with the configured keys.

    Raised for a wrong or missing key, an unknown key id, an altered byte, or a record
    copied from another place. The record is left exactly as it is.

    Attributes:
        key_id: The id of the key the record names (not secret), when readable.
        reason: ``no_key``, ``unknown_key``, ``tampered`` or ``malformed``.
    """

    def __init__(self, message: str, *, key_id: Optional[str] = None, reason: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.key_id = key_id
        self.reason = reason


class TransportError(TextStackError):
    """The network failed before a complete answer arrived.

    Attributes:
        route: The route template that was being called, e.g. ``GET /books/{slug}``.
        retryable: Whether trying again later may succeed.
    """

    def __init__(self, message: str, *, route: str = "", retryable: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.route = route
        self.retryable = retryable


class FieldError:
    """One field-level refusal of the server (chapter review). Immutable."""

    __slots__ = ("code", "message", "path")

    def __init__(self, path: str, code: str, message: str) -> None:
        self.path = path
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"FieldError(path={self.path!r}, code={self.code!r}, message={self.message!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FieldError) and (self.path, self.code, self.message) == (
            other.path,
            other.code,
            other.message,
        )

    def __hash__(self) -> int:
        return hash((self.path, self.code, self.message))


class ApiError(TextStackError):
    """The server answered with a status the call does not accept.

    Attributes:
        status: The HTTP status code.
        message: The server's message (or a sanitised snippet of its body).
        route: The route template, e.g. ``GET /me/books/{bookId}``.
        error: The server's machine-readable error code, when it gave one.
        errors: Field-level refusals, when the server gave them.
        retryable: Whether the same call may succeed later (429, 5xx).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        route: str = "",
        error: Optional[str] = None,
        errors: tuple[FieldError, ...] = (),
        retryable: Optional[bool] = None,
    ) -> None:
        self.status = status
        self.message = message
        self.route = route
        self.error = error
        self.errors = errors
        self.retryable = (status == 429 or status >= 500) if retryable is None else retryable
        super().__init__(self._render())

    def _render(self) -> str:
        where = f"{self.route}: " if self.route else ""
        text = f"{where}HTTP {self.status}: {self.message}"
        for fe in self.errors:
            text += f"; {fe.path}: {fe.message}" if fe.path else f"; {fe.message}"
        return text


class ProtocolError(ApiError):
    """The server's answer does not match the wire contract (HTML, wrong JSON shape)."""


class AuthorizationRequired(TextStackError):
    """A user-scoped call could not get a usable token; the request was not sent.

    Attributes:
        verification_uri: Where the person approves the pending login, if one is pending.
        user_code: The code to enter there, if a login is pending.
        verification_uri_complete: The same URL with the code filled in, when known.
        reason: Why no token was available.
    """

    def __init__(
        self,
        message: str,
        *,
        reason: str = "",
        verification_uri: Optional[str] = None,
        user_code: Optional[str] = None,
        verification_uri_complete: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.verification_uri = verification_uri
        self.user_code = user_code
        self.verification_uri_complete = verification_uri_complete


class AuthorizationError(TextStackError):
    """The device flow ended without tokens."""

    def __init__(self, message: str, *, error: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        self.error = error


class AuthorizationDenied(AuthorizationError):
    """The person refused the login (``access_denied``)."""


class AuthorizationExpired(AuthorizationError):
    """The device code expired before the person approved it."""


class AuthorizationTimeout(AuthorizationError):
    """``wait_for_token`` ran out of time while the login was still pending."""
