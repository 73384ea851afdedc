"""``textstack login | status | logout | token``: the sign-in commands.

The sign-in prompt (URL and user code) goes to stderr once per flow; a browser is
opened only for an https URL or an http loopback URL, only when asked or when the
session looks interactive. Long waits show progress on stderr: a rewritten line on a
terminal, a plain line every ``_PLAIN_EVERY`` seconds otherwise. No token is printed
anywhere except by ``token`` on stdout.
"""

from __future__ import annotations

import contextlib
import ipaddress
import sys
import threading
import time
import webbrowser
from collections.abc import Mapping
from typing import IO, TYPE_CHECKING, Any, Callable, Optional
from urllib.parse import urlsplit

from ._cli_format import describe_expiry, iso_utc, render_fields, to_json
from ._errors import AuthorizationRequired, AuthorizationTimeout, TransportError
from ._jwt import decode_exp, decode_subject
from ._models import Authorized, Failed, Pending, TokenResult
from ._text import for_terminal

if TYPE_CHECKING:
    from ._cli import Context

__all__ = [
    "Progress",
    "Prompter",
    "register",
    "safe_browser_url",
    "should_open_browser",
    "sign_in",
]

_TTY_EVERY = 1.0
_PLAIN_EVERY = 15.0


# ---------------------------------------------------------------- browser policy


def safe_browser_url(url: str) -> bool:
    """True for an https URL, or an http URL to a loopback host; nothing else is opened."""
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


# ---------------------------------------------------------------- commands


def cmd_login(ctx: Context) -> int:
    args = ctx.args
    if ctx.env_token():
        ctx.err(
            "textstack: note: TEXTSTACK_MCP_TOKEN is set; the SDK will use it instead of "
            "this sign-in while it stays set."
        )
    prompter = Prompter(ctx, no_browser=args.no_browser, force=args.browser)
    manager = ctx.manager(prompt=prompter)
    sign_in(ctx, manager, args.login_timeout, prompter)
    status = manager.status()
    who = f" as {for_terminal(status.subject)}" if status.subject else ""
    where = f"; tokens saved to {for_terminal(status.cache_path)}" if status.cache_path else ""
    ctx.out(f"Signed in{who}{where}.")
    return 0


def _status_data(ctx: Context) -> dict[str, Any]:
    from ._settings import resolve_api_url, resolve_site_host

    api_url = resolve_api_url(ctx.args.api_url, ctx.environ)
    site_host = resolve_site_host(ctx.args.site_host, ctx.environ)
    token = ctx.env_token()
    if token:
        exp = decode_exp(token)
        return {
            "source": "environment (TEXTSTACK_MCP_TOKEN)",
            "authorized": exp is None or exp > time.time(),
            "subject": decode_subject(token),
            "expires_at": exp,
            "has_refresh_token": False,
            "cache_path": None,
            "pending": None,
            "last_error": None,
            "api_url": api_url,
            "site_host": site_host,
        }
    manager = ctx.manager(prompt=False)
    status = manager.status()
    pending = status.pending or _shared_pending(manager.cache)
    return {
        "source": status.source,
        "authorized": status.authorized,
        "subject": status.subject,
        "expires_at": status.expires_at,
        "has_refresh_token": status.has_refresh_token,
        "cache_path": status.cache_path,
        "pending": None
        if pending is None
        else {
            "verification_uri": pending.verification_uri,
            "user_code": pending.user_code,
            "expires_at": iso_utc(pending.expires_at),
        },
        "last_error": status.last_error,
        "api_url": api_url,
        "site_host": site_host,
    }


def _shared_pending(cache: Any) -> Optional[Pending]:
    """A sign-in another process started and shares through the cache, if any."""
    from . import _shared_flow

    load = getattr(cache, "load_pending", None)
    if not callable(load):
        return None
    try:
        flow = _shared_flow.decode(load(), time.time())
    except Exception:  # noqa: BLE001 - status must not fail on a stray file
        return None
    if flow is None or flow.outcome is not None:
        return None
    return Pending(
        verification_uri=flow.auth.verification_uri,
        user_code=flow.auth.user_code,
        verification_uri_complete=flow.auth.verification_uri_complete,
        expires_at=flow.expires_at,
    )


def cmd_status(ctx: Context) -> int:
    data = _status_data(ctx)
    now = time.time()
    if ctx.json:
        shown = dict(data)
        shown["expires_at"] = iso_utc(data["expires_at"])
        exp = data["expires_at"]
        shown["expires_in_seconds"] = None if exp is None else int(exp - now)
        ctx.out(to_json(shown))
        return 0
    signed_in = data["authorized"] or data["has_refresh_token"]
    if data["authorized"]:
        state = "yes"
    elif data["has_refresh_token"]:
        state = "yes (the access token will be refreshed on next use)"
    else:
        state = "no (run `textstack login`)"
    pending = data["pending"]
    ctx.out(
        render_fields(
            [
                ("signed in", state),
                ("user", data["subject"] if signed_in else None),
                ("source", data["source"]),
                ("expires", describe_expiry(data["expires_at"], now) if signed_in else None),
                ("token cache", data["cache_path"]),
                ("api", f"{data['api_url']} (Host: {data['site_host']})"),
                (
                    "pending",
                    None
                    if pending is None
                    else f"open {pending['verification_uri']} and enter {pending['user_code']}",
                ),
                ("last error", data["last_error"]),
            ]
        )
    )
    return 0


def cmd_logout(ctx: Context) -> int:
    manager = ctx.manager(prompt=False)
    before = manager.status()
    manager.logout()
    path = for_terminal(before.cache_path or "")
    if before.source == "none" and not before.has_refresh_token:
        ctx.out(f"Not signed in; nothing to remove{' at ' + path if path else ''}.")
    else:
        ctx.out(f"Signed out{'; removed ' + path if path else ''}.")
    if ctx.env_token():
        ctx.err("textstack: note: TEXTSTACK_MCP_TOKEN is still set in the environment.")
    return 0


def cmd_token(ctx: Context) -> int:
    token = ctx.env_token()
    if token:
        ctx.out(token)
        return 0
    if ctx.args.login:
        prompter = Prompter(ctx, no_browser=ctx.args.no_browser, force=False)
        result: TokenResult = sign_in(ctx, ctx.manager(prompt=prompter), None, prompter)
    else:
        result = ctx.manager(prompt=False).get_token()
    if isinstance(result, Pending):
        raise AuthorizationRequired(
            result.message,
            verification_uri=result.verification_uri,
            user_code=result.user_code,
        )
    if isinstance(result, Failed):
        raise failed_to_error(result)
    ctx.out(result.access_token)
    return 0


def register(add: Callable[..., Any]) -> None:
    """Adds the sign-in commands to the parser."""
    login = add(
        "login", cmd_login, "sign in with the device flow and wait for approval", timeout=False
    )
    login.add_argument(
        "--timeout",
        dest="login_timeout",
        type=float,
        default=None,
        metavar="S",
        help="give up after S seconds (default: when the code expires)",
    )
    login.add_argument("--no-browser", action="store_true", help="never open a browser")
    login.add_argument(
        "--browser", action="store_true", help="open the browser even if not interactive"
    )
    status = add("status", cmd_status, "show who is signed in, until when, and where")
    status.add_argument("--json", action="store_true", help="print JSON")
    add("logout", cmd_logout, "forget the saved sign-in")
    token = add("token", cmd_token, "print the access token (refreshed if needed) on stdout")
    token.add_argument("--login", action="store_true", help="sign in (and wait) when not signed in")
    token.add_argument("--no-browser", action="store_true", help="never open a browser")
