"""``textstack demo`` and ``textstack dev-server``: the SDK against a local server.

``demo`` starts a FakeTextStackServer on an ephemeral port with a temporary token cache
(the real one is never touched), signs in with the device flow (approved through the
server's own approval endpoint unless ``--interactive``), makes catalog and user-scoped
calls, forces a refresh to show rotation, and signs out; each step is reported on
stdout, prompts on stderr, and no token is ever printed.
"""

from __future__ import annotations

import contextlib
import errno
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional

from .._errors import ConfigurationError, TextStackError
from .._text import for_terminal
from ._context import Context, UsageError
from ._format import describe_expiry, html_to_text
from ._signin import Progress, Prompter

if TYPE_CHECKING:
    from .._models import Pending

# What only the demo and the dev server need is imported when they run: every other
# command (``textstack token`` in a shell substitution) builds this parser too.

__all__ = ["DemoFailed", "register"]

_DEMO_INTERVAL = 0.2  # the server's poll interval; the manager's floor is lowered to match
_DEMO_WAIT = 20.0  # seconds to wait for an automatic approval before calling it broken


class DemoFailed(TextStackError):
    """The local server or the SDK did not behave as the demo expects: exit code 1."""


def _server_class() -> Any:
    try:
        from ..testing import FakeTextStackServer
    except ImportError as exc:  # cryptography signs the server's JWTs
        raise ConfigurationError(
            f"the local server needs the 'cryptography' package: pip install cryptography ({exc})"
        ) from exc
    return FakeTextStackServer


def approve_over_http(port: int, site_host: str, user_code: str, timeout: float = 5.0) -> None:
    """Approves a code through the server's approval API, as the approval page does."""
    import http.client
    import json

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(
            "POST",
            "/api/auth/device/approve",
            body=json.dumps({"user_code": user_code}).encode(),
            headers={"Host": site_host, "Content-Type": "application/json"},
        )
        response = conn.getresponse()
        response.read()
    except OSError as exc:
        raise DemoFailed(f"could not reach the approval endpoint: {exc}") from exc
    finally:
        conn.close()
    if response.status != 200:
        raise DemoFailed(f"the approval endpoint answered HTTP {response.status}")


class _Steps:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._n = 0

    def step(self, text: str) -> None:
        self._n += 1
        self._ctx.out(f"{self._n}. {text}")

    def detail(self, text: str) -> None:
        self._ctx.out(f"   {text}")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise DemoFailed(message)


def cmd_demo(ctx: Context) -> int:
    import pathlib
    import tempfile

    from .._cache import FileTokenCache
    from .._client import TextStackApiClient
    from .._models import Pending
    from .._token_manager import TokenManager

    server_class = _server_class()
    interactive = bool(ctx.args.interactive)
    started = time.monotonic()
    steps = _Steps(ctx)
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="textstack-demo-"))
        server = stack.enter_context(
            server_class(interval=_DEMO_INTERVAL, device_code_lifetime=600.0)
        )
        cache = FileTokenCache(pathlib.Path(tmp) / "mcp-token.json")
        steps.step(
            f"Started a local TextStack server at {server.api_url} (Host: {server.site_host}); "
            "tokens go to a temporary cache, not yours."
        )
        shown: list[Pending] = []
        browser_prompt = Prompter(ctx, no_browser=not interactive, force=False)

        def prompt(pending: Pending) -> None:
            shown.append(pending)
            if interactive:
                browser_prompt(pending)
            else:
                ctx.err(
                    f"[demo] sign-in prompt: open {for_terminal(pending.verification_uri)} "
                    f"and enter the code {for_terminal(pending.user_code)}"
                )

        manager = stack.enter_context(
            TokenManager(
                api_url=server.api_url,
                site_host=server.site_host,
                cache=cache,
                environ={},
                timeout=10.0,
                min_poll_interval=_DEMO_INTERVAL,
                prompt=prompt,
            )
        )
        client = stack.enter_context(
            TextStackApiClient(
                server.api_url,
                site_host=server.site_host,
                token_provider=manager,
                timeout=10.0,
                environ={},
            )
        )

        first = manager.get_token()
        _check(isinstance(first, Pending), f"expected a pending sign-in, got {first!r}")
        assert isinstance(first, Pending)
        steps.step(
            "Device login started: get_token() returned Pending at once (it never blocks); "
            f"user code {for_terminal(first.user_code)}."
        )
        if interactive:
            steps.detail(
                f"Approve it in your browser at {for_terminal(first.link)} "
                "(the page has Approve and Deny buttons)."
            )
            with Progress(sys.stderr, lambda: _left(first), tty=_stderr_tty()):
                manager.wait_for_token(timeout=None)
        else:
            approve_over_http(server.port, server.site_host, first.user_code)
            steps.detail(
                "Approved it through the server's approval endpoint "
                "(POST /api/auth/device/approve), as a person would on the /device page."
            )
            manager.wait_for_token(timeout=_DEMO_WAIT)
        status = manager.status()
        steps.step(
            f"wait_for_token() signed in as {for_terminal(status.subject or '?')}; the access "
            f"token expires {describe_expiry(status.expires_at, time.time())}; tokens saved "
            "to the cache file (owner-only)."
        )

        _catalog(client, steps)
        _user_calls(client, steps)
        _rotation(client, manager, cache, server, steps)

        manager.logout()
        steps.step(
            "logout(): tokens forgotten in memory and on disk "
            f"(cache file present: {'yes' if cache.path.exists() else 'no'})."
        )
        _check(not cache.path.exists(), "the cache file survived logout")
    ctx.out(f"Demo finished in {time.monotonic() - started:.1f} s. No network, no account needed.")
    return 0


def _stderr_tty() -> bool:
    with contextlib.suppress(AttributeError, ValueError, OSError):
        return bool(sys.stderr.isatty())
    return False


def _left(pending: Pending) -> Optional[float]:
    return None if pending.expires_at is None else pending.expires_at - time.time()


def _catalog(client: Any, steps: _Steps) -> None:
    results = client.search_books("Ishmael", limit=3)
    _check(results.items != (), "the catalog search found nothing")
    hit = results.items[0]
    steps.step(
        f"search_books('Ishmael'): {results.total} matching chapter(s); first: "
        f"{for_terminal(hit.edition.title or '?')} / {for_terminal(hit.chapter_title or '?')}."
    )
    book = client.get_book(hit.edition.slug)
    _check(book is not None, "get_book found no book for a search hit")
    steps.detail(
        f"get_book('{for_terminal(hit.edition.slug or '')}'): {for_terminal(book.title or '?')} by "
        f"{for_terminal(', '.join(a.name for a in book.authors))}, "
        f"{len(book.chapters)} chapters."
    )
    chapter = client.get_chapter(book.slug, hit.chapter_slug)
    _check(chapter is not None, "get_chapter found no chapter for a search hit")
    text = for_terminal(html_to_text(chapter.html), limit=70)
    steps.detail(
        f"get_chapter('{for_terminal(book.slug)}', '{for_terminal(hit.chapter_slug)}'): “{text}”"
    )


def _user_calls(client: Any, steps: _Steps) -> None:
    books = client.list_my_books()
    steps.step(
        f"list_my_books(): {len(books)} upload(s): "
        + ", ".join(for_terminal(b.title or b.id) for b in books)
        + "."
    )
    book = client.get_book("moby-dick")
    _check(book is not None and book.chapters != (), "the sample book is missing")
    edition_id, chapter = book.id, book.chapters[0]
    before = client.list_my_highlights(edition_id) or ()
    saved = client.save_highlight(
        edition_id, chapter.id, "Call me Ishmael.", note_text="saved by textstack demo"
    )
    after = client.list_my_highlights(edition_id) or ()
    _check(len(after) == len(before) + 1, "the saved highlight did not show up")
    steps.detail(
        f"list_my_highlights(): {len(before)} -> save_highlight() -> {len(after)} "
        f"(new id {for_terminal(saved.id) if saved is not None else '?'})."
    )
    client.set_progress(edition_id, chapter.id, "epubcfi(/6/2!/4/2)", percent=12.5)
    progress = client.get_progress(edition_id)
    _check(progress is not None and progress.percent == 12.5, "the progress was not stored")
    steps.detail(
        "set_progress(12.5 %) then get_progress(): chapter "
        f"{for_terminal(progress.chapter_slug or '?')}, {progress.percent:g} %."
    )
    insights = client.get_my_insights(edition_id=edition_id)
    steps.detail(f"get_my_insights(): {len(insights or ())} insight(s) about this book.")


def _rotation(client: Any, manager: Any, cache: Any, server: Any, steps: _Steps) -> None:
    old = cache.load()
    _check(old is not None, "the cache holds no tokens after sign-in")
    refreshes = server.count("POST /auth/refresh-mobile")
    # As if the server had answered 401: the next call refreshes once and replays.
    manager.invalidate(old.access_token)
    client.list_my_books()
    new = cache.load()
    _check(new is not None, "the cache lost the tokens on refresh")
    did = server.count("POST /auth/refresh-mobile") - refreshes
    access_changed = new.access_token != old.access_token
    refresh_changed = new.refresh_token != old.refresh_token
    _check(did == 1 and access_changed and refresh_changed, "the refresh did not rotate")
    steps.step(
        f"Forced a refresh (invalidate + next call): {did} refresh request; new access token: "
        f"{'yes' if access_changed else 'no'}; refresh token rotated: "
        f"{'yes' if refresh_changed else 'no'}; the cache holds the new pair."
    )


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    import signal

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        stop.set()

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


def cmd_dev_server(ctx: Context) -> int:
    import pathlib
    import tempfile

    args = ctx.args
    server_class = _server_class()
    site_host = args.site_host or "textstack.app"
    stop = threading.Event()
    with contextlib.ExitStack() as stack:
        stack.enter_context(_stop_on_signals(stop))
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="textstack-dev-"))
        try:
            server = stack.enter_context(
                server_class(
                    port=args.port,
                    site_host=site_host,
                    interval=args.interval,
                    access_token_lifetime=args.token_lifetime,
                    auto_approve=args.auto_approve,
                    record_limit=1000,
                )
            )
        except OSError as exc:
            if exc.errno not in (errno.EADDRINUSE, errno.EACCES):
                raise
            why = "is in use" if exc.errno == errno.EADDRINUSE else "needs privileges"
            raise UsageError(
                f"--port {args.port}: the port {why} on 127.0.0.1; choose another, "
                "or --port 0 for any free port"
            ) from None
        cache = pathlib.Path(tmp) / "mcp-token.json"
        ctx.out(server.api_url)
        ctx.out("")
        ctx.out("Point the SDK at it (in another shell):")
        ctx.out(
            f"  export TEXTSTACK_API_URL={server.api_url} TEXTSTACK_SITE_HOST={site_host} "
            f"TEXTSTACK_MCP_TOKEN_CACHE={cache}"
        )
        if args.interval < 1:
            ctx.out(f"  export TEXTSTACK_MIN_POLL_INTERVAL={args.interval:g}")
        if args.auto_approve:
            ctx.out("Every sign-in is approved at once (--auto-approve).")
        else:
            ctx.out(f"Approve sign-ins at {server.base_url}/device")
        ctx.out("The temporary token cache keeps your real sign-in untouched.")
        ctx.out("Ctrl-C (or SIGTERM) stops the server.")
        while not stop.wait(0.2):
            pass
    ctx.err("textstack: dev server stopped")
    return 0


def register(add: Callable[..., Any]) -> None:
    """Adds ``dev-server`` and ``demo``; neither takes the API, timeout or cache options."""
    dev = add(
        "dev-server",
        cmd_dev_server,
        "run a local TextStack server in the foreground",
        examples=[
            ("a server on any free port; it prints what to export", "textstack dev-server"),
            (
                "a fixed port, every sign-in approved at once",
                "textstack dev-server --port 8765 --auto-approve",
            ),
        ],
        options=("site_host",),
    )
    dev.add_argument(
        "--port", type=int, default=0, metavar="N", help="TCP port on 127.0.0.1 (0: any free)"
    )
    dev.add_argument(
        "--interval", type=float, default=1.0, metavar="S", help="device poll interval, s"
    )
    dev.add_argument(
        "--token-lifetime",
        type=float,
        default=900.0,
        metavar="S",
        help="access token lifetime, s",
    )
    dev.add_argument("--auto-approve", action="store_true", help="approve every sign-in at once")
    demo = add(
        "demo",
        cmd_demo,
        "run the SDK end to end against a local server (no account)",
        examples=[
            ("the whole tour, approved automatically", "textstack demo"),
            ("approve the sign-in yourself in a browser", "textstack demo --interactive"),
        ],
        options=(),
    )
    demo.add_argument(
        "--interactive",
        action="store_true",
        help="approve the sign-in yourself in the browser instead of automatically",
    )
