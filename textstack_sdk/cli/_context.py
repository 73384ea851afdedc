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
    AuthorizationError,
    AuthorizationRequired,
    ConfigurationError,
    TextStackError,
    TransportError,
)
from .._text import for_terminal

__all__ = [
    "EXIT_AUTH",
    "EXIT_CONFIG",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_NETWORK",
    "EXIT_OK",
    "EXIT_USAGE",
    "Context",
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

ENV_MIN_POLL = "TEXTSTACK_MIN_POLL_INTERVAL"


class Context:
    """What a command needs: parsed options, environment, streams, SDK objects.

    Not thread-safe; one per ``main()`` call. Objects it creates are closed by ``close()``.
    """

    def __init__(self, args: argparse.Namespace, environ: Mapping[str, str]) -> None:
        self.args = args
        self.environ = environ
        self._stack = contextlib.ExitStack()

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
        value = self.environ.get("TEXTSTACK_MCP_TOKEN", "").strip()
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
            raise ConfigurationError(f"{ENV_MIN_POLL} must be a number of seconds") from None

    def cache(self) -> Any:
        from .._cache import FileTokenCache, default_cache_path

        path = getattr(self.args, "cache", None)
        return FileTokenCache(path if path else default_cache_path(self.environ))

    def manager(self, *, prompt: Any = False) -> Any:
        """A TokenManager from the options and environment (closed with the context)."""
        from .._token_manager import TokenManager

        manager = TokenManager(
            api_url=self.args.api_url,
            site_host=self.args.site_host,
            cache=self.cache(),
            timeout=self.args.timeout,
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
            timeout=self.args.timeout,
            environ=self.environ,
        )
        self._stack.callback(client.close)
        return client

    def close(self) -> None:
        self._stack.close()


# ---------------------------------------------------------------- errors


def exit_code(exc: BaseException) -> int:
    """The documented exit code of an exception."""
    from .._client import InvalidArgument

    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, InvalidArgument):
        return EXIT_USAGE
    if isinstance(exc, (AuthorizationRequired, AuthorizationError)):
        return EXIT_AUTH
    if isinstance(exc, TransportError):
        return EXIT_NETWORK
    if isinstance(exc, ConfigurationError):
        return EXIT_CONFIG
    return EXIT_ERROR


def error_line(exc: BaseException) -> str:
    """The one line shown for an error (sanitised; SDK messages never hold secrets)."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    text = str(exc) or type(exc).__name__
    if isinstance(exc, AuthorizationRequired):
        text += " (`textstack login` signs in and waits for the approval)"
    elif isinstance(exc, (AuthorizationError)):
        text = f"sign-in failed: {text}"
    elif not isinstance(exc, TextStackError):
        text = f"unexpected {type(exc).__name__}: {text} (run with --debug for details)"
    return for_terminal(text, limit=1000)
