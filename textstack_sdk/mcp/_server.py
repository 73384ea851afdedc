"""``textstack mcp``: wires settings, sign-in, the client and the catalog to the stdio loop.

Sign-in (MCP_SERVER.md §2): ``TEXTSTACK_MCP_TOKEN`` (not blank) is a static bearer that
touches no file; otherwise the device-flow ``TokenManager`` with the shared file cache.
The manager never blocks: a user-scoped call with no usable token answers at once with
the "authentication required" text (the catalog renders it) while the sign-in waits for
approval in a daemon thread. Several servers of one user share the cache's pending
sign-in, so they show one user code. The prompt goes to stderr only.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Mapping
from typing import Any, Callable, Optional

from .._errors import ConfigurationError
from .._models import Pending
from .._providers import ENV_TOKEN, StaticTokenProvider, TokenProvider
from .._text import for_terminal
from .._version import __version__
from ._instructions import INSTRUCTIONS
from ._protocol import ServerCore
from ._stdio import Catalog, StdioServer, flush_or_drop, guard_stdio

__all__ = ["SERVER_NAME", "build_provider", "main", "serve_stdio"]

SERVER_NAME = "textstack"
ENV_MIN_POLL = "TEXTSTACK_MIN_POLL_INTERVAL"
# How long the exit waits for the sign-in to wind down. Its poll may be inside an HTTP
# request nothing can interrupt (up to the timeout, 15 s), and a host kills a server that
# lingers about 2 s after closing stdin or sending SIGTERM.
CLOSE_BOUND = 1.0


def _prompt(pending: Pending) -> None:
    _note(
        f"to connect TextStack, open {for_terminal(pending.verification_uri)}"
        f" and enter code {for_terminal(pending.user_code)}"
    )


def _note(text: str) -> None:
    try:
        sys.stderr.write(f"textstack mcp: {text}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass  # a closed stderr must not stop the server or its sign-in


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


def _min_poll_interval(environ: Mapping[str, str]) -> float:
    value = environ.get(ENV_MIN_POLL, "").strip()
    if not value:
        return 1.0
    try:
        return float(value)
    except ValueError:
        raise ConfigurationError(f"{ENV_MIN_POLL} must be a number of seconds") from None


def build_provider(environ: Mapping[str, str]) -> TokenProvider:
    """The static token when ``TEXTSTACK_MCP_TOKEN`` is set, else a device-flow manager."""
    token = environ.get(ENV_TOKEN, "")
    if token.strip():
        return StaticTokenProvider(token)
    from .._token_manager import TokenManager

    return TokenManager(
        environ=environ, prompt=_prompt, min_poll_interval=_min_poll_interval(environ)
    )


def serve_stdio(
    environ: Optional[Mapping[str, str]] = None,
    *,
    catalog_factory: Optional[Callable[[Any], Catalog]] = None,
    **options: Any,
) -> int:
    """Serves MCP on this process's stdin/stdout until stdin ends; returns the exit code.

    Args:
        environ: Settings (``TEXTSTACK_API_URL``, ``TEXTSTACK_SITE_HOST``,
            ``TEXTSTACK_MCP_TOKEN``, ``TEXTSTACK_MCP_TOKEN_CACHE``,
            ``TEXTSTACK_MCP_TIMEOUT_SECONDS``); ``os.environ`` when None.
        catalog_factory: Builds the catalog from the client; the 18-tool
            ``ToolCatalog`` when None (tests pass a small stand-in).
        **options: Passed to ``StdioServer`` (``workers``, ``max_line``, ``drain_timeout``).
    """
    from .._client import TextStackApiClient

    if catalog_factory is None:
        from ._catalog import ToolCatalog

        catalog_factory = ToolCatalog
    env = os.environ if environ is None else environ
    provider = build_provider(env)
    client = TextStackApiClient(token_provider=provider, environ=env)
    try:
        catalog = catalog_factory(client)
        core = ServerCore(
            tools=catalog.list_tools(),
            server_name=SERVER_NAME,
            server_version=__version__,
            instructions=INSTRUCTIONS,
        )
        if _isatty(0):
            # Someone typed the command by hand: MCP hosts start it themselves.
            _note("serving MCP on stdin/stdout for an MCP host (see README); Ctrl-D ends it")
        with guard_stdio() as (read_fd, write_fd):
            return StdioServer(core, catalog, read_fd=read_fd, write_fd=write_fd, **options).serve()
    finally:
        client.close()
        _close_bounded(provider)
        # A prompt that a closed stderr refused must not fail the interpreter's exit.
        flush_or_drop(sys.stderr, 2)


def _close_bounded(provider: TokenProvider) -> None:
    close = getattr(provider, "close", None)
    if callable(close):
        # A daemon thread: left behind past the bound, it cannot hold the process open.
        closer = threading.Thread(target=close, name="textstack-mcp-close", daemon=True)
        closer.start()
        closer.join(CLOSE_BOUND)


def main() -> int:
    """Entry point of ``textstack mcp``: an error before serving is one line on stderr."""
    from .._errors import TextStackError

    try:
        return serve_stdio()
    except KeyboardInterrupt:
        return 130
    except TextStackError as exc:
        _note(f"error: {for_terminal(str(exc), limit=1000)}")
        return 5 if isinstance(exc, ConfigurationError) else 1
