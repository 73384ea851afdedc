"""The bottom of the CLI: exit codes, the per-run ``Context``, and error reporting.

Every command module imports from here; this module imports no command module.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Mapping
from typing import Any, Optional

from .._errors import (
    ApiError,
    AuthorizationError,
    AuthorizationRequired,
    ConfigurationError,
    TextStackError,
    TransportError,
)
from .._text import for_terminal

__all__ = [
    "EXIT_AUTH",
    "EXIT_CODES",
    "EXIT_CONFIG",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_NETWORK",
    "EXIT_OK",
    "EXIT_USAGE",
    "CacheNotSaved",
    "Context",
    "UsageError",
    "error_line",
    "exit_code",
]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_NETWORK = 4
EXIT_CONFIG = 5
EXIT_INTERRUPTED = 130

# The one table of exit codes: ``textstack --help``, the README and the tests read it.
EXIT_CODES = (
    (EXIT_OK, "success (status: signed in)"),
    (EXIT_ERROR, "the server refused or failed (API error), or not found"),
    (EXIT_USAGE, "a bad argument or option value, whether the CLI or the server caught it"),
    (EXIT_AUTH, "not signed in (status too), or sign-in denied, expired or timed out"),
    (EXIT_NETWORK, "network error (also while starting a sign-in)"),
    (EXIT_CONFIG, "configuration error (URL, host, timeout) or an unusable token cache"),
    (EXIT_INTERRUPTED, "interrupted (Ctrl-C)"),
)
ENV_TOKEN = "TEXTSTACK_MCP_TOKEN"
# The token layer marks a sign-in that failed for network reasons with this prefix.
_NETWORK_MARK = "network: "


class UsageError(TextStackError):
    """An argument or option value the command cannot use: exit code 2."""


class CacheNotSaved(TextStackError):
    """Signed in, but the tokens could not be written to the token cache: exit code 5."""


ENV_MIN_POLL = "TEXTSTACK_MIN_POLL_INTERVAL"


class Context:
    """What a command needs: parsed options, environment, streams, SDK objects.

    Not thread-safe; one per ``main()`` call. Objects it creates are closed by ``close()``.
    """

    def __init__(self, args: argparse.Namespace, environ: Mapping[str, str]) -> None:
        self.args = args
        self.environ = environ
        self._stack = contextlib.ExitStack()
        self._cache: Any = None

    # -- streams -----------------------------------------------------------------------

    @staticmethod
    def out(text: str = "") -> None:
        """Writes a result line to stdout."""
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    @staticmethod
    def err(text: str = "") -> None:
        """Writes a prompt, progress or diagnostic line to stderr."""
        try:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass

    @property
    def json(self) -> bool:
        return bool(getattr(self.args, "json", False))

    # -- settings ----------------------------------------------------------------------

    def env_token(self) -> Optional[str]:
        """``TEXTSTACK_MCP_TOKEN`` when set and non-empty (it overrides any sign-in)."""
        value = self.environ.get(ENV_TOKEN, "").strip()
        return value or None

    def min_poll_interval(self) -> float:
        value = getattr(self.args, "min_poll_interval", None)
        if value is None:
            value = self.environ.get(ENV_MIN_POLL, "").strip() or None
        if value is None:
            return 1.0
        try:
            return float(value)
        except ValueError:
            raise ConfigurationError(
                f"{ENV_MIN_POLL}={str(value)[:50]!r} must be a number of seconds"
            ) from None

    def wait_timeout(self) -> Optional[float]:
        """``--timeout``: how long a command that waits for a person (login) may wait."""
        value = getattr(self.args, "timeout", None)
        return None if value is None else float(value)

    def request_timeout(self) -> Optional[float]:
        """The per-request timeout: ``--timeout``, but never longer than the default.

        ``--timeout`` means "give up after S seconds" on every command; a command that
        waits for a person spends it on the wait, and no one request may take longer.
        """
        value = self.wait_timeout()
        if value is None or value <= 0 or not self.waits_for_a_person():
            return value  # the token layer names an out-of-range value
        from .._settings import resolve_timeout

        return min(value, resolve_timeout(None, self.environ))

    def waits_for_a_person(self) -> bool:
        """Whether this command waits for an approval (``login``, ``token --login``)."""
        return bool(getattr(self.args, "waits", False) or getattr(self.args, "login", False))

    def cache(self) -> Any:
        """The token cache of this run (one per run, so a failed save is remembered);
        encrypted when the environment configures a key."""
        if self._cache is None:
            from .._cache import FileTokenCache, default_cache_path
            from .._cipher import cipher_from_env

            path = getattr(self.args, "cache", None)
            self._cache = FileTokenCache(
                path if path else default_cache_path(self.environ),
                cipher=cipher_from_env(environ=self.environ),
            )
        return self._cache

    def manager(self, *, prompt: Any = False) -> Any:
        """A TokenManager from the options and environment (closed with the context)."""
        from .._store import ENV_TOKEN_STORE
        from .._token_manager import TokenManager

        # With a fleet store the store keeps the login; no file on this host.
        fleet = bool(self.environ.get(ENV_TOKEN_STORE))
        manager = TokenManager(
            api_url=self.args.api_url,
            site_host=self.args.site_host,
            cache=None if fleet else self.cache(),
            timeout=self.request_timeout(),
            environ=self.environ,
            min_poll_interval=self.min_poll_interval(),
            prompt=prompt,
        )
        self._stack.callback(manager.close)
        return manager

    def client(self) -> Any:
        """A TextStackApiClient whose user-scoped calls never block on a sign-in."""
        from .._client import TextStackApiClient
        from .._providers import StaticTokenProvider

        token = self.env_token()
        provider = StaticTokenProvider(token) if token else self.manager(prompt=False)
        client = TextStackApiClient(
            self.args.api_url,
            site_host=self.args.site_host,
            token_provider=provider,
            timeout=self.request_timeout(),
            environ=self.environ,
        )
        self._stack.callback(client.close)
        return client

    def close(self) -> None:
        self._stack.close()


# ---------------------------------------------------------------- errors


def _network_failure(exc: BaseException) -> bool:
    """A sign-in that could not start or continue because of the network."""
    return isinstance(exc, AuthorizationRequired) and _NETWORK_MARK in (exc.reason or str(exc))


def _refused_value(exc: BaseException) -> bool:
    """The server refused an argument value (HTTP 400/422 naming the fields)."""
    return isinstance(exc, ApiError) and exc.status in (400, 422) and bool(exc.errors)


def exit_code(exc: BaseException) -> int:
    """The documented exit code of an exception (see ``EXIT_CODES``)."""
    from .._client import InvalidArgument

    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, (InvalidArgument, UsageError)) or _refused_value(exc):
        return EXIT_USAGE
    if isinstance(exc, TransportError) or _network_failure(exc):
        return EXIT_NETWORK
    if isinstance(exc, (AuthorizationRequired, AuthorizationError)):
        return EXIT_AUTH
    if isinstance(exc, (ConfigurationError, CacheNotSaved)):
        return EXIT_CONFIG
    return EXIT_ERROR


def _server_refusal(exc: ApiError) -> str:
    """The server's words, each once: its message, then field messages that add to it."""
    parts = [exc.message] if exc.message else []
    for field in exc.errors:
        if field.message and field.message not in parts:
            parts.append(field.message)
    return "the server refused the request: " + ("; ".join(parts) or f"HTTP {exc.status}")


def error_line(exc: BaseException, *, env_token: bool = False) -> str:
    """The one line shown for an error (sanitised; SDK messages never hold secrets).

    Args:
        exc: What went wrong.
        env_token: Whether ``TEXTSTACK_MCP_TOKEN`` supplied the token, so an auth
            failure is that variable's to fix, not a sign-in's.
    """
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    text = str(exc) or type(exc).__name__
    if _network_failure(exc):
        assert isinstance(exc, AuthorizationRequired)
        reason = exc.reason or text
        text = "network error: " + reason.replace(_NETWORK_MARK, "", 1)
    elif _refused_value(exc):
        assert isinstance(exc, ApiError)
        text = _server_refusal(exc)
    elif isinstance(exc, AuthorizationRequired) and env_token:
        text += f" ({ENV_TOKEN} is set and used instead of a sign-in: fix or unset it)"
    elif isinstance(exc, AuthorizationRequired):
        text += " (`textstack login` signs in and waits for the approval)"
    elif isinstance(exc, (AuthorizationError)):
        text = f"sign-in failed: {text}"
    elif not isinstance(exc, TextStackError):
        text = f"unexpected {type(exc).__name__}: {text} (run with --debug for details)"
    return for_terminal(text, limit=1000)
