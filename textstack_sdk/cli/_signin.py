"""The sign-in experience shared by commands: the prompt, the browser policy, progress.

The sign-in prompt (URL and user code) goes to stderr once per flow; a browser is
opened only for an https URL or an http loopback URL, only when asked or when the
session looks interactive. Long waits show progress on stderr: a rewritten line on a
terminal, a plain line every ``_PLAIN_EVERY`` seconds otherwise. Used by ``login`` and
``token`` (``_auth``) and by ``demo`` (``_demo``).
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Mapping
from typing import IO, TYPE_CHECKING, Any, Callable, Optional

from .._errors import AuthorizationRequired, AuthorizationTimeout, TransportError
from .._text import for_terminal
from ._context import Context

if TYPE_CHECKING:
    from .._models import Authorized, Failed, Pending, TokenResult

# The browser, URL and model modules are imported where a sign-in needs them: the
# commands that import this module include ``textstack token``, which must start fast.

__all__ = [
    "Progress",
    "Prompter",
    "failed_to_error",
    "safe_browser_url",
    "should_open_browser",
    "sign_in",
]

_TTY_EVERY = 1.0
_PLAIN_EVERY = 15.0


# ---------------------------------------------------------------- browser policy


def safe_browser_url(url: str) -> bool:
    """True for an https URL, or an http URL to a loopback host; nothing else is opened."""
    import ipaddress
    from urllib.parse import urlsplit

    if not isinstance(url, str) or for_terminal(url, limit=len(url) + 1) != url or " " in url:
        return False
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return False
    if not host or parts.username or parts.password:
        return False
    if parts.scheme == "https":
        return True
    if parts.scheme != "http":
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def should_open_browser(
    *, no_browser: bool, force: bool, environ: Mapping[str, str], interactive: bool
) -> bool:
    """Whether to open a browser at all (the URL is checked separately).

    Without ``force``: only in an interactive session, not in CI, and on Linux only with
    a display (otherwise ``webbrowser`` may start a text browser inside this terminal).
    """
    if no_browser:
        return False
    if force:
        return True
    if not interactive or environ.get("CI"):
        return False
    if sys.platform.startswith("linux") and not environ.get("BROWSER"):
        return bool(environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY"))
    return True


def _interactive() -> bool:
    try:
        return sys.stdin.isatty() and sys.stderr.isatty()
    except (AttributeError, ValueError, OSError):
        return False


class Prompter:
    """The sign-in prompt: the URL and code on stderr, and maybe a browser. Once per code.

    The token manager calls it for a flow it starts; ``sign_in`` calls it for a flow
    adopted from another process (which the manager does not announce).
    """

    def __init__(self, ctx: Context, *, no_browser: bool, force: bool) -> None:
        self._ctx = ctx
        self._no_browser = no_browser
        self._force = force
        self.shown: set[str] = set()

    def __call__(self, pending: Pending) -> None:
        if pending.user_code in self.shown:
            return
        self.shown.add(pending.user_code)
        ctx = self._ctx
        uri = for_terminal(pending.verification_uri)
        code = for_terminal(pending.user_code)
        ctx.err(f"To sign in to TextStack, open {uri} and enter the code: {code}")
        link = pending.link
        opened = False
        if should_open_browser(
            no_browser=self._no_browser,
            force=self._force,
            environ=ctx.environ,
            interactive=_interactive(),
        ):
            if safe_browser_url(link):
                try:
                    import webbrowser

                    opened = bool(webbrowser.open(link))
                except Exception:  # noqa: BLE001 - a broken browser setup is not fatal
                    opened = False
            else:
                ctx.err("(not opening a browser for a URL that is neither https nor loopback)")
        if opened:
            ctx.err("A browser window was opened; approve the code there.")
        ctx.err("Waiting for approval (Ctrl-C to cancel)...")


# ---------------------------------------------------------------- progress


class Progress:
    """Reports a long wait on a stream from a daemon thread. Not shared between waits.

    Args:
        stream: Where to write (stderr).
        left: Returns the seconds left, or None when unknown.
        tty: Rewrite one line (a terminal) instead of printing a line per report.
        every: Seconds between reports (defaults by ``tty``).
    """

    def __init__(
        self,
        stream: IO[str],
        left: Callable[[], Optional[float]],
        *,
        tty: bool,
        every: Optional[float] = None,
    ) -> None:
        self._stream = stream
        self._left = left
        self._tty = tty
        self._every = every if every is not None else (_TTY_EVERY if tty else _PLAIN_EVERY)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="textstack-progress", daemon=True)
        self._drawn = False

    @staticmethod
    def line(left: Optional[float]) -> str:
        if left is None:
            return "waiting for approval…"
        return f"waiting for approval… ({max(0, int(left))}s left)"

    def __enter__(self) -> Progress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        if self._drawn:
            self._write("\r\x1b[K")

    def _write(self, text: str) -> None:
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):
            pass

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            text = self.line(self._left())
            if self._tty:
                self._drawn = True
                self._write("\r\x1b[K" + text)
            else:
                self._write(text + "\n")


# ---------------------------------------------------------------- sign-in


def failed_to_error(result: Failed) -> Exception:
    """The exception for a Failed token result: network trouble or an auth problem."""
    message = for_terminal(result.message)
    if "network:" in message:
        return TransportError(message)
    return AuthorizationRequired(f"authentication required — {message}", reason=message)


def sign_in(ctx: Context, manager: Any, timeout: Optional[float], prompter: Prompter) -> Authorized:
    """Gets a token, running the device flow (prompt, progress) when needed.

    Raises:
        AuthorizationError: Denied, expired or timed out.
        TransportError: The sign-in could not start because of the network.
    """
    from .._models import Authorized, Failed

    first: TokenResult = manager.get_token()
    if isinstance(first, Authorized):
        return first
    if isinstance(first, Failed):
        raise failed_to_error(first)
    prompter(first)  # no-op when the manager already showed it
    deadline = None if timeout is None else time.monotonic() + timeout
    expires_at = first.expires_at

    def left() -> Optional[float]:
        candidates = []
        if deadline is not None:
            candidates.append(deadline - time.monotonic())
        if expires_at is not None:
            candidates.append(expires_at - time.time())
        return min(candidates) if candidates else None

    tty = False
    with contextlib.suppress(AttributeError, ValueError, OSError):
        tty = sys.stderr.isatty()
    try:
        with Progress(sys.stderr, left, tty=tty):
            return manager.wait_for_token(timeout=timeout)  # type: ignore[no-any-return]
    except AuthorizationTimeout as exc:
        if timeout is not None:
            raise AuthorizationTimeout(
                f"no approval within {timeout:g} s; run `textstack login` again"
            ) from exc
        raise
