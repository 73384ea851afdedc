"""Secret canary: a whole session, every output captured, no token anywhere.

Every access token, refresh token and device code that crossed the wire is harvested
from a recording transport (and from the server's request log for the CLI run). Then
everything a person or a log pipeline could see is scanned for them: DEBUG records of
every logger (root, urllib3, textstack_sdk.*), warnings, the repr/str/Jupyter display
of every returned object, every exception's str, repr, attributes and full traceback
with its ``__cause__``/``__context__`` chain, and the CLI's stdout and stderr (only
``textstack token`` may print the access token, on stdout).
"""

# ruff: noqa: F811 - pytest fixtures imported from the harness are parameters here

from __future__ import annotations

import contextlib
import io
import json
import logging
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
from _redis_harness import redis_binary, redis_fleet  # noqa: F401 - fixtures

from textstack_sdk import (
    ApiError,
    AuthorizationRequired,
    Authorized,
    FileTokenCache,
    Pending,
    TextStackApiClient,
    TextStackError,
    TokenManager,
    TransportError,
)
from textstack_sdk._http import Request, Response
from textstack_sdk._transport import Urllib3Transport
from textstack_sdk.testing import FakeClock, FakeTextStackServer

from ._faults import poller_alive, step_clock
from ._report import scenario

pytestmark = pytest.mark.timeout(120)

CANARY_SDK = scenario(
    "secrets",
    "full SDK session: login, API calls, forced refresh, revoked tokens (401), "
    "404/500/HTML 502/network errors, logout",
    "no access/refresh token or device code (nor a 12-char prefix/suffix) in DEBUG logs "
    "of any logger, warnings, repr/str/Jupyter display, exception text/repr/traceback/chain",
)
CANARY_CLI = scenario(
    "secrets",
    "CLI with --debug: login, status, status --json, search, books, token, logout, books",
    "no secret on stdout/stderr except the access token on `token`'s stdout",
)

CANARY_KEY = scenario(
    "secrets",
    "encryption keys: sealed session (login, refresh, status, logout), plaintext migration, "
    "rotation, wrong/unknown key, altered record, malformed keys, refused key files, keys "
    "pasted into the key-file and keyring variables",
    "no key (nor a 12-char prefix/suffix, its hex or standard base64) in DEBUG logs, "
    "warnings, reprs, exception text/repr/traceback/chain",
)

CANARY_CLI_KEY = scenario(
    "secrets",
    "CLI with --debug and a key list configured: cache key, login, status (--json), "
    "books, cache rekey, cache decrypt, logout; then a wrong key: status, books, login",
    "no configured key anywhere on stdout/stderr/logs; `cache key` prints its fresh key "
    "on stdout only",
)

SECRET_KEYS = (
    "access_token",
    "refresh_token",
    "accessToken",
    "refreshToken",
    "device_code",
)


class Secrets:
    """Every secret seen, with the needles to look for."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}  # secret -> kind

    def add(self, value: object, kind: str) -> None:
        if isinstance(value, str) and len(value) >= 16:
            self.values.setdefault(value, kind)

    def harvest_json(self, body: Optional[bytes]) -> None:
        if not body:
            return
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return
        if isinstance(data, dict):
            for key in SECRET_KEYS:
                kind = "device code" if key == "device_code" else key.lower().replace("_", "")
                self.add(data.get(key), kind)

    def harvest_headers(self, headers: Any) -> None:
        for name, value in headers:
            if name.lower() == "authorization" and value.startswith("Bearer "):
                self.add(value[len("Bearer ") :], "accesstoken")

    def needles(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for secret, kind in self.values.items():
            found[secret] = kind
            found[secret[-12:]] = f"{kind} suffix"
            parts = secret.split(".")
            if len(parts) == 3:  # a JWT: its header prefix is common to all; check the rest
                found[parts[1][-12:]] = f"{kind} payload"
                found[parts[2][:12]] = f"{kind} signature prefix"
            else:
                found[secret[:12]] = f"{kind} prefix"
        return found

    def count(self, kind: str) -> int:
        return sum(1 for k in self.values.values() if k == kind)


class Recording:
    """A transport that harvests secrets from every request and response."""

    def __init__(self, secrets: Secrets) -> None:
        self.inner = Urllib3Transport(timeout=5, backoff=0.0)
        self.secrets = secrets

    def handle_request(self, request: Request) -> Response:
        self.secrets.harvest_headers(request.headers)
        self.secrets.harvest_json(request.body)
        response = self.inner.handle_request(request)
        self.secrets.harvest_json(response.body)
        return response

    def close(self) -> None:
        self.inner.close()


class Haystack:
    """Everything a person or a log pipeline could see."""

    def __init__(self) -> None:
        self.texts: list[tuple[str, str]] = []

    def add(self, where: str, text: str) -> None:
        self.texts.append((where, text))

    def show(self, where: str, obj: object, *, fields: bool = True) -> None:
        self.add(f"repr {where}", repr(obj))
        self.add(f"str {where}", str(obj))
        for method in ("_repr_html_", "_repr_markdown_", "_repr_pretty_", "__rich__"):
            display = getattr(obj, method, None)
            if callable(display) and method != "_repr_pretty_":
                self.add(f"{method} {where}", str(display()))
        if fields and hasattr(obj, "__dataclass_fields__"):
            for name in obj.__dataclass_fields__:
                value = getattr(obj, name, None)
                if not isinstance(value, str):
                    self.add(f"field {where}.{name}", repr(value))

    def exception(self, where: str, exc: BaseException) -> None:
        self.show(where, exc)
        self.add(
            f"traceback {where}",
            "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
        )
        seen = set()
        link: Optional[BaseException] = exc
        while link is not None and id(link) not in seen:
            seen.add(id(link))
            self.add(f"chain {where}", f"{link!r} {link} {vars(link)!r} {link.args!r}")
            link = link.__cause__ or link.__context__

    def expect(self, where: str, call: Callable[[], Any], *kinds: type[BaseException]) -> Any:
        try:
            result = call()
        except kinds as exc:
            self.exception(where, exc)
            return exc
        self.show(where, result)
        return result

    def scan(self, secrets: Secrets) -> int:
        needles = secrets.needles()
        for where, text in self.texts:
            for needle, kind in needles.items():
                assert needle not in text, f"{kind} leaked in {where}: ...{text[:300]}..."
        return len(self.texts)


class _AllRecords(logging.Handler):
    def __init__(self, haystack: Haystack) -> None:
        super().__init__(logging.DEBUG)
        self.haystack = haystack
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        self.haystack.add(f"log {record.name}", self.format(record))
        self.haystack.add(f"log args {record.name}", f"{record.msg!r} {record.args!r}")


@contextlib.contextmanager
def debug_everything(haystack: Haystack) -> Iterator[_AllRecords]:
    handler = _AllRecords(haystack)
    names = ["", "urllib3", "textstack_sdk", "textstack_sdk.auth", "textstack_sdk.cache"]
    loggers = [logging.getLogger(n) for n in names]
    saved = [(lg, lg.level, lg.propagate, lg.disabled) for lg in loggers]
    root = logging.getLogger()
    root.addHandler(handler)
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
        lg.disabled = False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield handler
        finally:
            root.removeHandler(handler)
            for lg, level, propagate, disabled in saved:
                lg.setLevel(level)
                lg.propagate = propagate
                lg.disabled = disabled
    for warning in caught:
        haystack.add("warning", str(warning.message))


def _login(tm: TokenManager, server: FakeTextStackServer, clock: FakeClock, hay: Haystack) -> None:
    pending = hay.expect("get_token (start)", tm.get_token)
    assert isinstance(pending, Pending)
    server.approve(pending.user_code)
    step_clock(clock, done=lambda: not poller_alive(), between=lambda: None)
    assert isinstance(hay.expect("get_token (after approval)", tm.get_token), Authorized)


def test_full_sdk_session_leaks_no_secret(tmp_path: Path) -> None:
    secrets = Secrets()
    hay = Haystack()
    clock = FakeClock()
    with debug_everything(hay) as records, FakeTextStackServer(clock=clock, interval=5) as server:
        ids = server.sample_ids
        pride, war = ids["pride-and-prejudice"], ids["the-art-of-war"]
        transport = Recording(secrets)
        prompts: list[Pending] = []
        cache = FileTokenCache(tmp_path / "textstack" / "mcp-token.json")
        tm = TokenManager(
            api_url=server.api_url,
            site_host=server.site_host,
            cache=cache,
            clock=clock,
            transport=transport,
            timeout=5,
            prompt=prompts.append,
        )
        client = TextStackApiClient(
            server.api_url, site_host=server.site_host, token_provider=tm, transport=transport
        )
        for name, obj in (("manager", tm), ("client", client), ("cache", cache)):
            hay.show(name, obj)

        # Not signed in: the user call raises with the pending sign-in.
        hay.expect("books before login", client.list_my_books, AuthorizationRequired)
        for pending in prompts:
            hay.show("prompt", pending)
        server.approve(prompts[-1].user_code)
        step_clock(clock, done=lambda: not poller_alive(), between=lambda: None)
        calls: dict[str, Callable[[], Any]] = {
            "search": lambda: client.search_books("truth"),
            "book": lambda: client.get_book("pride-and-prejudice"),
            "no such book": lambda: client.get_book("no-such-book"),
            "chapter": lambda: client.get_chapter("pride-and-prejudice", "chapter-2"),
            "my books": client.list_my_books,
            "my book": lambda: client.get_my_book(war),
            "shelves": client.get_shelves,
            "highlights": lambda: client.list_my_highlights(pride),
            "ask": lambda: client.ask_book(pride, "What truth?", k=2),
            "status": tm.status,
        }
        for name, call in calls.items():
            hay.expect(name, call)
        hay.show("token result", tm.get_token())
        hay.show("cached set", cache.load())

        # Forced refresh, then a one-off 401 (refresh once, replay once).
        clock.advance(1000)
        hay.expect("books after expiry", client.list_my_books)
        server.inject("GET /me/books", status=401)
        hay.expect("books after one 401", client.list_my_books)

        # Errors on every path.
        server.inject("GET /me/books", status=500, json={"error": "boom", "message": "x"})
        hay.expect("500", client.list_my_books, ApiError)
        server.inject("GET /search", status=502, body="<html>502</html>", times=5)
        hay.expect("HTML 502", lambda: client.search_books("x"), ApiError)
        server.inject("GET /me/shelves", drop=True, effect=False)
        server.inject("GET /me/library/shelves", drop=True, effect=False, times=5)
        hay.expect("dropped", client.get_shelves, TransportError, ApiError)
        server.inject("GET /me/books", status=403, json={"error": "forbidden"})
        hay.expect("403", client.list_my_books, ApiError)
        server.inject("POST /auth/refresh-mobile", status=502, body="<h1>bad</h1>")
        dead = TextStackApiClient(
            "http://127.0.0.1:9/api", site_host=server.site_host, token_provider=tm, timeout=1
        )
        hay.expect("network error", dead.list_my_books, TransportError)
        dead.close()

        # Every token revoked: the 401 sends the user back to sign in.
        # (the first refresh meets the injected 502 above, the next one the revocation)
        server.revoke_all()
        hay.expect("books after revoke, 502", client.list_my_books, AuthorizationRequired)
        clock.advance(61)
        hay.expect("books after revoke", client.list_my_books, AuthorizationRequired)
        hay.expect("status after revoke", tm.status)
        for pending in prompts:
            hay.show("prompt", pending)
        _login(tm, server, clock, hay)
        hay.expect("books after new login", client.list_my_books)

        # A denied and an expired sign-in through wait_for_token.
        tm.logout()
        to_deny = tm.get_token()
        assert isinstance(to_deny, Pending)
        server.deny(to_deny.user_code)
        step_clock(clock, done=lambda: not poller_alive(), between=lambda: None)
        hay.expect("denied", lambda: tm.wait_for_token(timeout=0), TextStackError)
        hay.expect("status", tm.status)
        hay.expect("logout", tm.logout)
        hay.expect("books after logout", client.list_my_books, AuthorizationRequired)
        tm.close()
        client.close()
        hay.show("server", server)
        for request in server.requests:
            hay.show("recorded request", request, fields=False)  # the test kit keeps bodies
        log_count = records.count
    assert secrets.count("accesstoken") >= 3 and secrets.count("refreshtoken") >= 2
    assert secrets.count("device code") >= 3
    assert log_count > 20  # DEBUG logging really was on
    scanned = hay.scan(secrets)
    CANARY_SDK.add("secrets tracked", len(secrets.values))
    CANARY_SDK.add("texts scanned", scanned)
    CANARY_SDK.add("log records", log_count)


def test_cli_session_prints_no_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from textstack_sdk.cli import main

    hay = Haystack()
    secrets = Secrets()
    token_stdout = ""
    with FakeTextStackServer(interval=0.02, auto_approve=True) as server:
        cache_path = tmp_path / "cli" / "mcp-token.json"
        for name in ("TEXTSTACK_MCP_TOKEN", "TEXTSTACK_API_URL", "TEXTSTACK_SITE_HOST"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("TEXTSTACK_API_URL", server.api_url)
        monkeypatch.setenv("TEXTSTACK_SITE_HOST", server.site_host)
        monkeypatch.setenv("TEXTSTACK_MCP_TOKEN_CACHE", str(cache_path))
        monkeypatch.setenv("TEXTSTACK_MIN_POLL_INTERVAL", "0")
        commands = [
            ["login", "--no-browser", "--timeout", "20", "--debug"],
            ["status", "--debug"],
            ["status", "--json", "--debug"],
            ["search", "truth", "--debug"],
            ["books", "--debug"],
            ["token", "--debug"],
            ["logout", "--debug"],
            ["books", "--debug"],
            ["token", "--debug"],
        ]
        with debug_everything(hay):
            for argv in commands:
                monkeypatch.setattr("sys.stdin", io.StringIO(""))
                code = main(argv)
                out, err = capsys.readouterr()
                hay.add(f"stderr of {argv}", err)
                if argv[0] == "token" and code == 0:
                    token_stdout = out.strip()
                else:
                    hay.add(f"stdout of {argv}", out)
                if cache_path.exists():
                    data = json.loads(cache_path.read_bytes())
                    secrets.add(data.get("accessToken"), "accesstoken")
                    secrets.add(data.get("refreshToken"), "refreshtoken")
        for request in server.requests:
            secrets.harvest_headers(request.headers.items())
            secrets.harvest_json(request.body)
    assert token_stdout and token_stdout in secrets.values  # `token` printed the token
    assert secrets.count("device code") >= 1 and secrets.count("refreshtoken") >= 1
    scanned = hay.scan(secrets)
    CANARY_CLI.add("commands run", len(commands))
    CANARY_CLI.add("secrets tracked", len(secrets.values))
    CANARY_CLI.add("texts scanned", scanned)


def _add_key(secrets: Secrets, key: str) -> None:
    import base64

    raw = base64.urlsafe_b64decode(key)
    secrets.add(key, "cache key")
    secrets.add(key.rstrip("="), "cache key")
    secrets.add(raw.hex(), "cache key hex")
    secrets.add(base64.b64encode(raw).decode(), "cache key base64")
    secrets.add(repr(raw)[2:40], "cache key bytes")


def test_cache_keys_never_leak(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from textstack_sdk import AesGcmCipher, CacheDecryptionError, ConfigurationError
    from textstack_sdk import cipher_from_env as from_env

    secrets = Secrets()
    hay = Haystack()
    clock = FakeClock()
    old, new, stranger = (AesGcmCipher.generate_key() for _ in range(3))
    for key in (old, new, stranger):
        _add_key(secrets, key)
    # Near-keys typed wrong are secrets too: one character off, or one character short.
    almost = ("A" if new[0] != "A" else "B") + new[1:]
    secrets.add(almost, "mistyped key")
    secrets.add(new[:-2], "truncated key")
    path = tmp_path / "textstack" / "mcp-token.json"
    with debug_everything(hay) as records, FakeTextStackServer(clock=clock, interval=5) as server:
        transport = Recording(secrets)

        def manager(cache: FileTokenCache) -> TokenManager:
            hay.show("cache", cache)
            hay.show("cipher", cache.cipher)
            return TokenManager(
                api_url=server.api_url,
                site_host=server.site_host,
                cache=cache,
                clock=clock,
                transport=transport,
                timeout=5,
                prompt=False,
            )

        # A plaintext login, then the key arrives: migration, a sealed session, rotation.
        plain = manager(FileTokenCache(path, cipher=None))
        _login(plain, server, clock, hay)
        plain.close()
        monkeypatch.setenv("TEXTSTACK_CACHE_KEY", old)
        sealed = manager(FileTokenCache(path))
        hay.expect("status (migrated)", sealed.status)
        clock.advance(1000)
        hay.expect("refresh (sealed)", sealed.get_token)
        hay.expect("status (sealed)", sealed.status)
        sealed.close()
        monkeypatch.setenv("TEXTSTACK_CACHE_KEY", f"{new},{old}")
        rotated = manager(FileTokenCache(path))
        clock.advance(1000)
        hay.expect("refresh (rotated)", rotated.get_token)
        rotated.close()
        # Wrong key, no key, altered record: Failed, and the exceptions of load().
        for label, cipher in (("unknown key", AesGcmCipher(stranger)), ("no key", None)):
            cache = FileTokenCache(path, cipher=cipher)
            hay.expect(f"load ({label})", cache.load, CacheDecryptionError)
            refused = manager(cache)
            hay.expect(f"get_token ({label})", refused.get_token)
            hay.expect(f"status ({label})", refused.status)
            refused.close()
        raw = bytearray(path.read_bytes())
        raw[len(raw) // 2] ^= 0x01
        path.write_bytes(bytes(raw))
        hay.expect(
            "load (altered)",
            FileTokenCache(path, cipher=AesGcmCipher(new)).load,
            CacheDecryptionError,
        )
        # Malformed keys and refused key files.
        for label, value in (
            ("mistyped", f"{almost}x"),
            ("short", new[:-2]),
            ("list", f"{new},{almost}!"),
        ):
            hay.expect(
                f"malformed key ({label})",
                lambda value=value: from_env(environ={"TEXTSTACK_CACHE_KEY": value}),
                ConfigurationError,
            )
        key_file = tmp_path / "key"
        key_file.write_text(f"{new}\n{old}\n")
        for mode in (0o644, 0o600):
            key_file.chmod(mode)
            hay.expect(
                f"key file {mode:o}",
                lambda: from_env(environ={"TEXTSTACK_CACHE_KEY_FILE": str(key_file)}),
                ConfigurationError,
            )
        key_file.write_text(almost)
        hay.expect(
            "key file with a bad key",
            lambda: from_env(environ={"TEXTSTACK_CACHE_KEY_FILE": str(key_file)}),
            ConfigurationError,
        )
        # A key pasted into a variable that names a file or a keyring service.
        for name in ("TEXTSTACK_CACHE_KEY_FILE", "TEXTSTACK_CACHE_KEY_KEYRING"):
            for value in (new, almost, f"{new},{old}"):
                hay.expect(
                    f"key in {name}",
                    lambda name=name, value=value: from_env(environ={name: value}),
                    ConfigurationError,
                )
        log_count = records.count
    assert secrets.count("cache key") >= 6
    scanned = hay.scan(secrets)
    CANARY_KEY.add("keys tracked", 5)
    CANARY_KEY.add("texts scanned", scanned)
    CANARY_KEY.add("log records", log_count)


def test_cli_cache_commands_print_no_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from textstack_sdk import AesGcmCipher
    from textstack_sdk.cli import main

    hay = Haystack()
    secrets = Secrets()
    old, new, stranger = (AesGcmCipher.generate_key() for _ in range(3))
    for key in (old, new, stranger):
        _add_key(secrets, key)
    fresh: list[str] = []
    with FakeTextStackServer(interval=0.02, auto_approve=True) as server:
        for name in ("TEXTSTACK_MCP_TOKEN", "TEXTSTACK_CACHE_KEY", "TEXTSTACK_CACHE_KEY_FILE"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("TEXTSTACK_API_URL", server.api_url)
        monkeypatch.setenv("TEXTSTACK_SITE_HOST", server.site_host)
        monkeypatch.setenv("TEXTSTACK_MCP_TOKEN_CACHE", str(tmp_path / "cli" / "mcp-token.json"))
        monkeypatch.setenv("TEXTSTACK_MIN_POLL_INTERVAL", "0")
        sessions = [
            (
                f"{old}",
                [
                    ["login", "--no-browser", "--timeout", "20", "--debug"],
                    ["status", "--debug"],
                ],
            ),
            (
                f"{new},{old}",
                [
                    ["cache", "key", "--debug"],
                    ["status", "--json", "--debug"],
                    ["books", "--debug"],
                    ["cache", "rekey", "--debug"],
                    ["cache", "decrypt", "--to-plaintext", "--debug"],
                ],
            ),
            (
                f"{stranger}",
                [
                    ["status", "--debug"],
                    ["books", "--debug"],
                    ["login", "--no-browser", "--timeout", "5", "--debug"],
                    ["cache", "rekey", "--debug"],
                    ["logout", "--debug"],
                ],
            ),
        ]
        count = 0
        with debug_everything(hay):
            for keys, commands in sessions:
                monkeypatch.setenv("TEXTSTACK_CACHE_KEY", keys)
                for argv in commands:
                    monkeypatch.setattr("sys.stdin", io.StringIO(""))
                    main(argv)
                    count += 1
                    out, err = capsys.readouterr()
                    hay.add(f"stderr of {argv}", err)
                    if argv[:2] == ["cache", "key"]:
                        fresh.append(out.strip())
                    else:
                        hay.add(f"stdout of {argv}", out)
        for request in server.requests:
            secrets.harvest_headers(request.headers.items())
            secrets.harvest_json(request.body)
    assert len(fresh) == 1 and len(fresh[0]) == 44
    _add_key(secrets, fresh[0])  # the new key: on `cache key`'s stdout, nowhere else
    scanned = hay.scan(secrets)
    CANARY_CLI_KEY.add("commands run", count)
    CANARY_CLI_KEY.add("texts scanned", scanned)


def test_the_canary_can_fail() -> None:
    """The scanner finds a planted 12-character piece of a token."""
    secrets = Secrets()
    secrets.add("eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXNlY3JldA", "accesstoken")
    secrets.add("rt-0123456789abcdefghij", "refreshtoken")
    for planted in ("c2lnbmF0dXJl", "rt-012345678", "456789abcdefghij"):
        hay = Haystack()
        hay.add("planted", f"log line ... {planted} ...")
        with pytest.raises(AssertionError, match="leaked"):
            hay.scan(secrets)


CANARY_FLEET = scenario(
    "secrets",
    "many hosts: fleet sign-in through a password-protected Redis store, a refresh "
    "through the store, status, Redis down and back, logout of the fleet",
    "no access/refresh token, device code or Redis password (nor a 12-char prefix/suffix) "
    "in DEBUG logs, warnings, reprs, status, exception text/repr/traceback/chain",
)


def test_fleet_session_leaks_no_secret(redis_fleet: Any) -> None:
    from _fleet_helpers import OffsetClock

    from textstack_sdk._redis_store import RedisTokenStore
    from textstack_sdk._store import StoreError

    password = "canary-redis-password-0123456789"
    redis = redis_fleet.server(password=password)
    secrets = Secrets()
    secrets.add(password, "redis password")
    hay = Haystack()
    clock = OffsetClock()
    transport = Recording(secrets)
    with FakeTextStackServer(clock=clock, interval=0.05) as server, debug_everything(hay):
        store = RedisTokenStore(redis.url, socket_timeout=0.3, connect_timeout=0.3)
        hay.show("store", store)
        tm = TokenManager(
            api_url=server.api_url,
            site_host=server.site_host,
            store=store,
            transport=transport,
            clock=clock,
            timeout=2,
            prompt=False,
            min_poll_interval=0.0,
        )
        pending = hay.expect("fleet get_token (sign-in)", tm.get_token)
        assert isinstance(pending, Pending)
        server.approve(pending.user_code)
        hay.expect("fleet wait_for_token", lambda: tm.wait_for_token(timeout=20))
        clock.advance(3600)
        assert isinstance(hay.expect("fleet get_token (refresh)", tm.get_token), Authorized)
        hay.show("fleet status", tm.status())
        hay.show("fleet record", store.load())
        redis.stop()
        clock.advance(3600)
        hay.expect("fleet get_token (store down)", tm.get_token)
        hay.expect("fleet load (store down)", store.load, StoreError)
        hay.show("fleet status (store down)", tm.status())
        redis.restart()
        hay.expect("fleet logout", tm.logout)
        tm.close()
        store.close()
    transport.close()
    assert secrets.count("accesstoken") >= 2 and secrets.count("refreshtoken") >= 2
    assert secrets.count("device code") == 1
    CANARY_FLEET.add("texts scanned", hay.scan(secrets))
    CANARY_FLEET.add("secrets checked", len(secrets.values))
