"""The ``textstack`` command line, end to end against FakeTextStackServer over real sockets.

Commands run in-process through ``main([...])`` with capsys; the environment comes from
monkeypatch and the token cache lives in tmp_path. ``demo`` and ``dev-server`` also run
once as subprocesses to prove the module entry point and signal handling.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import pathlib
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import webbrowser
from typing import Any, Iterator, Optional

import pytest
from _servers import closed_port

from textstack_sdk import FileTokenCache, TokenSet
from textstack_sdk._jwt import decode_exp
from textstack_sdk.cli import main
from textstack_sdk.cli._format import describe_expiry, html_to_text, render_table, to_json
from textstack_sdk.cli._signin import Progress, safe_browser_url, should_open_browser
from textstack_sdk.testing import FakeTextStackServer

ROOT = pathlib.Path(__file__).resolve().parents[1]
MOBY = "moby-dick"

pytestmark = pytest.mark.timeout(30)


# ------------------------------------------------------------------ fixtures and helpers


@pytest.fixture
def server() -> Iterator[FakeTextStackServer]:
    with FakeTextStackServer(interval=0.05) as srv:
        yield srv


@pytest.fixture
def cache_path(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "tokens" / "mcp-token.json"


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path, cache_path: pathlib.Path) -> None:
    for name in list(os.environ):
        if name.startswith("TEXTSTACK_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("TEXTSTACK_MCP_TOKEN_CACHE", str(cache_path))
    monkeypatch.setenv("TEXTSTACK_MIN_POLL_INTERVAL", "0")


@pytest.fixture(autouse=True)
def browser(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records webbrowser.open instead of opening anything, in every test."""
    opened: list[str] = []

    def fake_open(url: str, *args: Any, **kwargs: Any) -> bool:
        opened.append(url)
        return True

    monkeypatch.setattr(webbrowser, "open", fake_open)
    return opened


@pytest.fixture
def api_env(monkeypatch: pytest.MonkeyPatch, server: FakeTextStackServer) -> FakeTextStackServer:
    monkeypatch.setenv("TEXTSTACK_API_URL", server.api_url)
    monkeypatch.setenv("TEXTSTACK_SITE_HOST", server.site_host)
    return server


class Run:
    """One ``main()`` call's result."""

    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def __repr__(self) -> str:
        return f"Run(code={self.code}, out={self.out!r}, err={self.err!r})"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> Run:
    capsys.readouterr()
    code = main(list(argv))
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err)


class Approver:
    """Approves (or denies) the next device code from a background thread."""

    def __init__(self, server: FakeTextStackServer, *, deny: bool = False) -> None:
        self.codes: queue.Queue[str] = queue.Queue()
        self.errors: list[BaseException] = []

        def work() -> None:
            try:
                code = server.wait_for_user_code(timeout=10)
                (server.deny if deny else server.approve)(code)
                self.codes.put(code)
            except BaseException as exc:
                self.errors.append(exc)

        self.thread = threading.Thread(target=work, daemon=True)
        self.thread.start()

    def code(self) -> str:
        self.thread.join(10)
        assert not self.errors, self.errors
        return self.codes.get(timeout=1)


def signed_in(server: FakeTextStackServer, cache_path: pathlib.Path) -> TokenSet:
    access, refresh = server.issue_tokens()
    tokens = TokenSet(access, refresh, decode_exp(access))
    assert FileTokenCache(cache_path).save(tokens)
    return tokens


# ------------------------------------------------------------------ usage and help


def test_help_documents_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, "--help")
    assert result.code == 0
    for text in ("exit codes", "130", "network error", "configuration error", "demo"):
        assert text in result.out


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    result = run(
        capsys,
    )
    assert result.code == 2
    assert result.out == ""
    assert "usage:" in result.err


@pytest.mark.parametrize(
    "argv",
    [("search",), ("insights",), ("insights", "--edition-id", "a", "--book-id", "b"), ("nope",)],
)
def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str], argv: tuple[str, ...]) -> None:
    result = run(capsys, *argv)
    assert result.code == 2
    assert result.out == ""


def test_global_options_work_after_the_command(
    capsys: pytest.CaptureFixture[str], server: FakeTextStackServer
) -> None:
    result = run(capsys, "search", "Ishmael", "--json", "--api-url", server.api_url)
    assert result.code == 0, result
    assert json.loads(result.out)["total"] == 1


# ------------------------------------------------------------------ the login session


def test_session_login_status_token_search_logout_leaks_no_secret(
    capsys: pytest.CaptureFixture[str],
    api_env: FakeTextStackServer,
    cache_path: pathlib.Path,
    browser: list[str],
) -> None:
    server = api_env
    outputs: list[str] = []

    approver = Approver(server)
    login = run(capsys, "login", "--timeout", "10")
    code = approver.code()
    assert login.code == 0, login
    assert "Signed in" in login.out
    assert login.err.count(code) == 1  # the prompt, printed once
    assert f"{server.base_url}/device" in login.err
    assert browser == []  # stderr is not a terminal under capsys
    outputs += [login.out, login.err]

    tokens = FileTokenCache(cache_path).load()
    assert tokens is not None and tokens.refresh_token

    status = run(capsys, "status")
    assert status.code == 0
    assert re.search(r"^signed in: +yes$", status.out, re.MULTILINE)
    assert str(cache_path) in status.out
    assert server.user_id in status.out
    assert "in 14m" in status.out
    outputs += [status.out, status.err]

    status_json = run(capsys, "status", "--json")
    data = json.loads(status_json.out)
    assert data["authorized"] is True
    assert data["source"] == "cache"
    assert data["cache_path"] == str(cache_path)
    assert data["subject"] == server.user_id
    assert data["expires_at"].endswith("+00:00")
    assert 0 < data["expires_in_seconds"] <= 900
    outputs += [status_json.out, status_json.err]

    token = run(capsys, "token")
    assert token.code == 0
    assert token.out == tokens.access_token + "\n"
    assert token.err == ""

    search = run(capsys, "search", "Ishmael")
    assert search.code == 0
    outputs += [search.out, search.err]

    books = run(capsys, "books")
    assert books.code == 0
    assert "Meditations" in books.out
    outputs += [books.out, books.err]

    logout = run(capsys, "logout")
    assert logout.code == 0
    assert "Signed out" in logout.out
    assert not cache_path.exists()
    outputs += [logout.out, logout.err]

    device_codes = [
        r.json()["device_code"] for r in server.requests if r.route == "POST /auth/device/token"
    ]
    assert device_codes
    secrets = [tokens.access_token, tokens.refresh_token, *device_codes]
    for text in outputs:
        for secret in secrets:
            assert secret not in text


def test_login_when_already_signed_in_does_not_start_a_flow(
    capsys: pytest.CaptureFixture[str], api_env: FakeTextStackServer, cache_path: pathlib.Path
) -> None:
    signed_in(api_env, cache_path)
    result = run(capsys, "login", "--no-browser")
    assert result.code == 0
    assert api_env.count("POST /auth/device/code") == 0


def test_login_denied_exits_3(
    capsys: pytest.CaptureFixture[str], api_env: FakeTextStackServer
) -> None:
    approver = Approver(api_env, deny=True)
    result = run(capsys, "login", "--no-browser", "--timeout", "10")
    approver.code()
    assert result.code == 3
    assert result.out == ""
    assert result.err.strip().splitlines()[-1].startswith("textstack: error: sign-in failed")
    assert "Traceback" not in result.err


def test_login_timeout_exits_3(
    capsys: pytest.CaptureFixture[str], api_env: FakeTextStackServer
) -> None:
    result = run(capsys, "login", "--no-browser", "--timeout", "0.2")
    assert result.code == 3
    assert "no approval within 0.2 s" in result.err


def test_login_with_browser_flag_opens_only_the_loopback_url(
    capsys: pytest.CaptureFixture[str], api_env: FakeTextStackServer, browser: list[str]
) -> None:
    approver = Approver(api_env)
    result = run(capsys, "login", "--browser", "--timeout", "10")
    code = approver.code()
    assert result.code == 0
    assert browser == [f"{api_env.base_url}/device?code={code}"]


def test_token_login_flag_waits_then_prints_only_the_token(
    capsys: pytest.CaptureFixture[str], api_env: FakeTextStackServer, cache_path: pathlib.Path
) -> None:
    approver = Approver(api_env)
    result = run(capsys, "token", "--login", "--no-browser")
    approver.code()
    assert result.code == 0
    tokens = FileTokenCache(cache_path).load()
    assert tokens is not None
    assert result.out == tokens.access_token + "\n"


# ------------------------------------------------------------------ not signed in


@pytest.mark.parametrize("argv", [("token",), ("books",), ("shelves",), ("progress", "x")])
def test_not_signed_in_exits_3_with_the_pending_message(
    capsys: pytest.CaptureFixture[str], api_env: FakeTextStackServer, argv: tuple[str, ...]
) -> None:
    started = time.monotonic()
    result = run(capsys, *argv)
    assert time.monotonic() - started < 5  # never waits for the approval
    assert result.code == 3
    assert result.out == ""
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    code = api_env.pending_user_codes()[-1]
    assert lines[0].startswith(
        f"textstack: error: authentication required — open {api_env.base_url}/device and "
        f"enter code {code} to connect TextStack, then retry."
    )
    assert "textstack login" in lines[0]
    assert api_env.count("GET /me/*") == 0  # nothing sent without a token


def test_code_shown_by_a_read_command_is_the_one_login_waits_for(
    capsys: pytest.CaptureFixture[str], api_env: FakeTextStackServer
) -> None:
    first = run(capsys, "books")
    assert first.code == 3
    code = api_env.pending_user_codes()[-1]
    assert code in first.err
    status = run(capsys, "status", "--json")
    assert json.loads(status.out)["pending"]["user_code"] == code
    assert code in run(capsys, "status").out

    approver = Approver(api_env)
    login = run(capsys, "login", "--no-browser", "--timeout", "10")
    assert approver.code() == code
    assert login.code == 0, login
    assert login.err.count(code) == 1  # an adopted sign-in is announced too, once
    assert api_env.count("POST /auth/device/code") == 1
    assert run(capsys, "books").code == 0


def test_status_when_signed_out(
    capsys: pytest.CaptureFixture[str], api_env: FakeTextStackServer
) -> None:
    text = run(capsys, "status")
    assert text.code == 3  # as `gh auth status`: scripts can test it
    assert "textstack login" in text.out
    as_json = run(capsys, "status", "--json")
    assert as_json.code == 3
    data = json.loads(as_json.out)
    assert data["authorized"] is False
    assert data["source"] == "none"
    assert data["expires_at"] is None
    assert api_env.count("*") == 0  # status does no network


def test_logout_when_signed_out(capsys: pytest.CaptureFixture[str], api_env: Any) -> None:
    result = run(capsys, "logout")
    assert result.code == 0
    assert "Not signed in" in result.out


def test_env_token_is_used_and_reported(
    capsys: pytest.CaptureFixture[str],
    api_env: FakeTextStackServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    access, _ = api_env.issue_tokens()
    monkeypatch.setenv("TEXTSTACK_MCP_TOKEN", access)
    assert run(capsys, "token").out == access + "\n"
    data = json.loads(run(capsys, "status", "--json").out)
    assert data["source"].startswith("environment")
    assert data["authorized"] is True
    assert access not in json.dumps(data)
    assert run(capsys, "books").code == 0


# ------------------------------------------------------------------ read commands


def test_search_json_parses(capsys: pytest.CaptureFixture[str], api_env: Any) -> None:
    result = run(capsys, "search", "Ishmael", "--limit", "5", "--json")
    assert result.code == 0
    data = json.loads(result.out)
    assert data["total"] == 1
    assert data["items"][0]["edition"]["slug"] == MOBY
    assert data["items"][0]["chapter_slug"] == "loomings"


def test_search_table(capsys: pytest.CaptureFixture[str], api_env: Any) -> None:
    result = run(capsys, "search", "Ishmael")
    assert result.code == 0
    lines = result.out.splitlines()
    assert lines[0].split()[:3] == ["BOOK", "SLUG", "CHAPTER"]
    assert "Moby-Dick" in lines[1] and "loomings" in lines[1]
    assert "<b>" not in result.out  # match highlights are shown as text
    assert lines[-1] == "1 of 1 matching chapters"


def test_book_table_and_json(capsys: pytest.CaptureFixture[str], api_env: Any) -> None:
    table = run(capsys, "book", MOBY)
    assert table.code == 0
    assert "Herman Melville" in table.out
    assert "the-carpet-bag" in table.out
    data = json.loads(run(capsys, "book", MOBY, "--json").out)
    assert [c["slug"] for c in data["chapters"]] == [
        "loomings",
        "the-carpet-bag",
        "the-spouter-inn",
    ]


def test_book_not_found_exits_1(capsys: pytest.CaptureFixture[str], api_env: Any) -> None:
    result = run(capsys, "book", "no-such-book")
    assert result.code == 1
    assert result.out == ""
    assert result.err == "textstack: error: not found: book no-such-book\n"


def test_chapter_text_and_html(capsys: pytest.CaptureFixture[str], api_env: Any) -> None:
    text = run(capsys, "chapter", MOBY, "loomings")
    assert text.code == 0
    assert "Call me Ishmael." in text.out
    assert "<p>" not in text.out
    assert "next: the-carpet-bag" in text.out
    markup = run(capsys, "chapter", MOBY, "loomings", "--html")
    assert "<p>Call me Ishmael." in markup.out


def test_user_read_commands(
    capsys: pytest.CaptureFixture[str], api_env: FakeTextStackServer, cache_path: pathlib.Path
) -> None:
    signed_in(api_env, cache_path)
    ids = api_env.sample_ids
    edition = ids[MOBY]
    cases = [
        (("books",), "Meditations"),
        (("shelves",), "Continue reading"),
        (("highlights", edition), "CREATED"),
        (("vocabulary", "--limit", "2"), "WORD"),
        (("library", "war"), "The Art of War"),
        (("insights", "--edition-id", edition), "CREATED"),
    ]
    for argv, expected in cases:
        result = run(capsys, *argv)
        assert result.code == 0, (argv, result)
        assert expected in result.out, (argv, result.out)
        as_json = run(capsys, *argv, "--json")
        assert as_json.code == 0
        json.loads(as_json.out)


def test_progress_command(
    capsys: pytest.CaptureFixture[str], api_env: FakeTextStackServer, cache_path: pathlib.Path
) -> None:
    signed_in(api_env, cache_path)
    edition = api_env.sample_ids[MOBY]
    missing = run(capsys, "progress", edition)
    assert missing.code == 0, missing
    assert "not opened it yet" in missing.out and "not found" not in missing.out + missing.err
    assert run(capsys, "progress", edition, "--json").out == "null\n"
    from textstack_sdk import StaticTokenProvider, TextStackApiClient

    token = FileTokenCache(cache_path).load()
    assert token is not None
    with TextStackApiClient(
        api_env.api_url,
        site_host=api_env.site_host,
        token_provider=StaticTokenProvider(token.access_token),
    ) as client:
        client.set_progress(edition, api_env.sample_ids[f"{MOBY}/loomings"], "loc", percent=40)
    result = run(capsys, "progress", edition, "--json")
    assert result.code == 0
    assert json.loads(result.out)["percent"] == 40
    table = run(capsys, "progress", edition)
    assert "loomings" in table.out


def test_server_strings_are_stripped_of_control_characters(
    capsys: pytest.CaptureFixture[str], api_env: FakeTextStackServer
) -> None:
    evil = "Moby\x1b[2J\x1b]0;owned\x07 Dick\x9b31m\u202e"
    payload = {
        "total": 1,
        "items": [
            {
                "chapterId": "c1",
                "chapterSlug": "loom\x1b[31mings",
                "chapterTitle": evil,
                "chapterNumber": 1,
                "edition": {"id": "e1", "slug": "moby", "title": evil, "authors": evil},
                "highlights": [f"<b>{evil}</b>"],
            }
        ],
    }
    api_env.inject("GET /search", json=payload, times=2)
    table = run(capsys, "search", "x")
    assert table.code == 0, table
    assert "Moby" in table.out
    for bad in ("\x1b", "\x07", "\x9b", "\u202e"):
        assert bad not in table.out
    as_json = run(capsys, "search", "x", "--json")
    for bad in ("\x1b", "\x07", "\x9b", "\u202e"):
        assert bad not in as_json.out
    # ...yet the JSON still carries the exact data.
    assert json.loads(as_json.out)["items"][0]["chapter_title"] == evil


# ------------------------------------------------------------------ errors


def test_unreachable_api_exits_4_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{closed_port()}/api"
    result = run(capsys, "--api-url", url, "--timeout", "3", "search", "x")
    assert result.code == 4
    assert result.out == ""
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("textstack: error: "), result.err
    assert "Traceback" not in result.err

    debug = run(capsys, "--api-url", url, "--timeout", "3", "--debug", "search", "x")
    assert debug.code == 4
    assert "Traceback (most recent call last)" in debug.err
    assert "TransportError" in debug.err
    assert debug.err.strip().splitlines()[-1].startswith("textstack: error: ")


def test_configuration_error_exits_5(capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, "--api-url", "http://example.com/api", "search", "x")
    assert result.code == 5
    assert result.err.startswith("textstack: error: ")
    assert len(result.err.strip().splitlines()) == 1


def test_api_error_exits_1(
    capsys: pytest.CaptureFixture[str], api_env: FakeTextStackServer
) -> None:
    api_env.inject("GET /books/{slug}", status=500, json={"message": "boom\x1b[0m"})
    result = run(capsys, "book", MOBY)
    assert result.code == 1
    assert "boom" in result.err and "\x1b" not in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_keyboard_interrupt_exits_130(
    capsys: pytest.CaptureFixture[str], api_env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from textstack_sdk.cli import _read as _cli_read

    def interrupted(ctx: Any) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(_cli_read, "cmd_books", interrupted)
    result = run(capsys, "books")
    assert result.code == 130
    assert result.err == "textstack: error: interrupted\n"


def test_debug_enables_sdk_logging_without_secrets(
    capsys: pytest.CaptureFixture[str], api_env: FakeTextStackServer, cache_path: pathlib.Path
) -> None:
    tokens = signed_in(api_env, cache_path)
    result = run(capsys, "--debug", "books")
    assert result.code == 0
    assert "DEBUG" in result.err
    assert tokens.access_token not in result.err
    assert tokens.refresh_token is not None and tokens.refresh_token not in result.err


# ------------------------------------------------------------------ demo and dev-server


def test_demo_in_process(capsys: pytest.CaptureFixture[str], cache_path: pathlib.Path) -> None:
    started = time.monotonic()
    result = run(capsys, "demo")
    assert result.code == 0, result
    assert time.monotonic() - started < 5
    for text in (
        "Device login started",
        "Approved it through the server's approval endpoint",
        "search_books",
        "list_my_books",
        "save_highlight",
        "get_progress",
        "refresh token rotated: yes",
        "logout()",
        "Demo finished",
    ):
        assert text in result.out
    assert "sign-in prompt" in result.err
    assert not cache_path.exists()  # the user's cache is never touched


def test_demo_interactive_waits_for_the_person(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, browser: list[str]
) -> None:
    from textstack_sdk.cli import _demo as _cli_demo

    started: queue.Queue[FakeTextStackServer] = queue.Queue()

    def make_server(**options: Any) -> FakeTextStackServer:
        srv = FakeTextStackServer(**options)
        started.put(srv)
        return srv

    monkeypatch.setattr(_cli_demo, "_server_class", lambda: make_server)
    result_box: list[Run] = []
    worker = threading.Thread(
        target=lambda: result_box.append(run(capsys, "demo", "--interactive"))
    )
    worker.start()
    srv = started.get(timeout=10)
    code = srv.wait_for_user_code(timeout=10)
    srv.approve(code)
    worker.join(20)
    (result,) = result_box
    assert result.code == 0, result
    assert "Approve it in your browser" in result.out
    assert f"enter the code: {code}" in result.err
    assert browser == []  # not a terminal: no browser, even with --interactive
    assert srv.count("POST /auth/device/approve") == 0


@pytest.mark.timeout(60)
def test_demo_subprocess_module_entry_point(tmp_path: pathlib.Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEXTSTACK_")}
    env["PYTHONPATH"] = str(ROOT)
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    done = subprocess.run(
        [sys.executable, "-m", "textstack_sdk", "demo"],
        capture_output=True,
        text=True,
        env=env,
        timeout=45,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Demo finished" in done.stdout
    assert not (tmp_path / "xdg").exists()


def _first_line(stream: Any, timeout: float) -> str:
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
    return lines.get(timeout=timeout)


@pytest.mark.timeout(60)
def test_dev_server_subprocess_answers_then_stops_on_sigterm() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEXTSTACK_")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.Popen(
        [sys.executable, "-m", "textstack_sdk", "dev-server", "--interval", "0.5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        api_url = _first_line(proc.stdout, 20).strip()
        assert api_url.startswith("http://127.0.0.1:") and api_url.endswith("/api")
        instructions = "".join(_first_line(proc.stdout, 5) for _ in range(4))
        assert f"export TEXTSTACK_API_URL={api_url} TEXTSTACK_SITE_HOST=textstack.app" in (
            instructions
        )
        assert "TEXTSTACK_MIN_POLL_INTERVAL=0.5" in instructions
        port = int(api_url.split(":")[2].split("/")[0])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/api/search?q=Ishmael", headers={"Host": "textstack.app"})
        response = conn.getresponse()
        assert response.status == 200
        assert json.loads(response.read())["total"] == 1
        conn.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


# ------------------------------------------------------------------ pure helpers


@pytest.mark.parametrize(
    ("url", "safe"),
    [
        ("https://textstack.app/device?code=AB", True),
        ("http://127.0.0.1:8000/device", True),
        ("http://localhost/device", True),
        ("http://[::1]:9/device", True),
        ("http://textstack.app/device", False),
        ("file:///etc/passwd", False),
        ("javascript:alert(1)", False),
        ("https://user:pw@textstack.app/", False),
        ("https://textstack.app/\x1b[2J", False),
        ("", False),
    ],
)
def test_safe_browser_url(url: str, safe: bool) -> None:
    assert safe_browser_url(url) is safe


def test_should_open_browser_policy() -> None:
    display = {"DISPLAY": ":0"}
    assert not should_open_browser(no_browser=True, force=True, environ=display, interactive=True)
    assert should_open_browser(no_browser=False, force=True, environ={}, interactive=False)
    assert not should_open_browser(
        no_browser=False, force=False, environ=display, interactive=False
    )
    assert not should_open_browser(
        no_browser=False, force=False, environ={**display, "CI": "1"}, interactive=True
    )
    if sys.platform.startswith("linux"):
        assert not should_open_browser(no_browser=False, force=False, environ={}, interactive=True)
    assert should_open_browser(no_browser=False, force=False, environ=display, interactive=True)


def test_progress_prints_plain_lines_when_not_a_terminal() -> None:
    wrote = threading.Event()

    class Stream(io.StringIO):
        def write(self, text: str) -> int:
            size = super().write(text)
            wrote.set()
            return size

    stream = Stream()
    with Progress(stream, lambda: 42.4, tty=False, every=0.01):
        assert wrote.wait(5)
    first = stream.getvalue().splitlines()[0]
    assert first == "waiting for approval… (42s left)"
    assert "\r" not in stream.getvalue()
    assert Progress.line(None) == "waiting for approval…"


def test_format_helpers() -> None:
    assert html_to_text("<p>a &amp; b</p><p>c<br>d</p><script>x()</script>") == "a & b\n\nc\n\nd"
    table = render_table(("a", "b"), [("x\x1b[1m", None), ("longer", 2.5)])
    assert table.splitlines() == ["A       B", "x [1m", "longer  2.5"]
    assert to_json({"s": "\x1b\x9b"}) == '{\n  "s": "\\u001b\\u009b"\n}'
    now = 1_700_000_000.0
    described: Optional[str] = describe_expiry(now + 125, now)
    assert described is not None and described.endswith("(in 2m 5s)")
    assert describe_expiry(now - 3700, now) is not None
    assert "1h 1m ago" in (describe_expiry(now - 3700, now) or "")
    assert describe_expiry(None, now) is None


# ------------------------------------------------------------------ help, exit codes, messages


def _subparsers() -> dict[str, Any]:
    import argparse

    from textstack_sdk.cli._main import build_parser

    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_exit_code_table_is_in_help_once_and_in_the_readme(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from textstack_sdk.cli._context import EXIT_CODES
    from textstack_sdk.cli._main import exit_code_table

    table = exit_code_table()
    assert [line.split()[0] for line in table.splitlines()[1:]] == [
        str(code) for code, _ in EXIT_CODES
    ]
    top = run(capsys, "--help").out
    assert table in top and "environment:" in top and "TEXTSTACK_MCP_TOKEN_CACHE" in top
    assert table in (ROOT / "README.md").read_text(encoding="utf-8")
    reference = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    for code, meaning in EXIT_CODES:
        assert f"| {code} | {meaning} |" in reference
    for name in _subparsers():
        sub = run(capsys, name, "--help")
        assert sub.code == 0
        # The shared footer appears once, in `textstack --help`, not per command.
        assert "exit codes:" not in sub.out and "environment:" not in sub.out, name


def test_a_command_line_gets_the_help_of_the_full_parser(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # `textstack` builds only the commands its command line names (start-up); what any
    # command prints for --help is what the fully built parser prints.
    import argparse

    from textstack_sdk.cli._main import build_parser

    full = build_parser()
    assert run(capsys, "--help").out == full.format_help()
    for name, sub in _subparsers().items():
        assert run(capsys, name, "--help").out == sub.format_help(), name
        groups = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
        for group in groups:
            for action, inner in group.choices.items():
                assert run(capsys, name, action, "--help").out == inner.format_help()
    assert run(capsys, "--timeout", "1", "cache", "key").code == 0
    unknown = run(capsys, "no-such-command")
    assert unknown.code == 2 and "invalid choice" in unknown.err


def test_every_argument_and_option_has_help_and_every_command_examples() -> None:
    import argparse

    for name, sub in _subparsers().items():
        for action in sub._actions:
            if action.help == argparse.SUPPRESS:
                continue
            assert action.help, (name, action.dest)
            if action.choices is not None:
                assert all(str(c) in action.help for c in action.choices), (name, action.dest)
        examples = re.findall(r"^  \$ .*textstack ", sub.epilog or "", re.MULTILINE)
        assert 2 <= len(examples) <= 3, (name, sub.epilog)
        assert "examples:" in (sub.epilog or "")


def test_stage_choices_are_checked_before_any_request(
    capsys: pytest.CaptureFixture[str], api_env: FakeTextStackServer
) -> None:
    result = run(capsys, "vocabulary", "--stage", "bogus")
    assert result.code == 2
    assert "'new', 'learning', 'known'" in result.err
    assert api_env.count("*") == 0


def test_a_value_the_server_refuses_is_a_usage_error_shown_once(
    capsys: pytest.CaptureFixture[str], api_env: FakeTextStackServer, cache_path: pathlib.Path
) -> None:
    signed_in(api_env, cache_path)
    # The server's validation answer: its message repeats the first field's message.
    said = "'stage' must be one of new, learning, known."
    api_env.inject(
        "GET /me/vocabulary/words",
        status=400,
        json={
            "error": "validation_failed",
            "message": said,
            "errors": [{"path": "stage", "code": "invalid", "message": said}],
        },
    )
    result = run(capsys, "vocabulary", "--stage", "4")
    assert result.code == 2, result
    assert api_env.count("GET /me/vocabulary/words") == 1
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("textstack: error: the server refused")
    assert lines[0].count(said) == 1


@pytest.mark.parametrize(
    "argv",
    [("books",), ("token",), ("search", "x"), ("highlights", "e1"), ("login", "--no-browser")],
)
def test_a_network_failure_is_exit_4_on_every_command(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...]
) -> None:
    url = f"http://127.0.0.1:{closed_port()}/api"
    result = run(capsys, "--api-url", url, "--timeout", "3", *argv)
    assert result.code == 4, result
    assert result.err.startswith("textstack: error: network error") or "connection" in result.err
    assert "textstack login` signs in" not in result.err


def test_global_timeout_bounds_the_login_wait(
    capsys: pytest.CaptureFixture[str], api_env: FakeTextStackServer
) -> None:
    started = time.monotonic()
    result = run(capsys, "--timeout", "0.3", "login", "--no-browser")
    assert result.code == 3, result
    assert "no approval within 0.3 s" in result.err
    assert time.monotonic() - started < 10  # not the code's ten-minute lifetime


def test_token_login_honours_the_timeout(
    capsys: pytest.CaptureFixture[str], api_env: FakeTextStackServer
) -> None:
    result = run(capsys, "token", "--login", "--no-browser", "--timeout", "0.3")
    assert result.code == 3, result
    assert result.out == ""
    assert "no approval within 0.3 s" in result.err


def test_a_rejected_env_token_says_to_fix_or_unset_the_variable(
    capsys: pytest.CaptureFixture[str],
    api_env: FakeTextStackServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEXTSTACK_MCP_TOKEN", "not-a-token-the-server-issued")
    result = run(capsys, "books")
    assert result.code == 3
    assert "TEXTSTACK_MCP_TOKEN is set" in result.err and "fix or unset it" in result.err
    assert "textstack login" not in result.err
    assert "not-a-token-the-server-issued" not in result.err


@pytest.mark.parametrize(
    ("where", "value", "shown"),
    [
        ("env", "https://ann:sekret@[::1/api", "TEXTSTACK_API_URL='https://***@[::1/api'"),
        ("option", "ftp://example.com/api", "api_url='ftp://example.com/api'"),
        ("env", "http://example.com/api", "TEXTSTACK_API_URL='http://example.com/api'"),
        ("option", "https://h/api?sekret=1", "api_url='https://h/api?***'"),
        # Malformed URLs are the ones shown: their credentials are hidden just the same.
        ("env", "ann:sekret@example.com/api", "TEXTSTACK_API_URL='***@example.com/api'"),
        ("option", "//ann:sekret@h/api", "api_url='//***@h/api'"),
        ("option", "https:/ann:sekret@h/api", "api_url='https:/***@h/api'"),
        ("env", "https://ann:se/kret@h/api", "TEXTSTACK_API_URL='https://***@h/api'"),
    ],
)
def test_a_configuration_error_names_the_setting_and_its_value(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    where: str,
    value: str,
    shown: str,
) -> None:
    if where == "env":
        monkeypatch.setenv("TEXTSTACK_API_URL", value)
        result = run(capsys, "search", "x")
    else:
        result = run(capsys, "--api-url", value, "search", "x")
    assert result.code == 5, result
    assert shown in result.err
    assert "sekret" not in result.err and "ann:" not in result.err


def test_timeout_out_of_range_names_the_value(capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, "--timeout", "0", "search", "x")
    assert result.code == 5
    assert "timeout must be between 0 and 600 seconds, got 0.0" in result.err


@pytest.mark.parametrize(
    "argv",
    [
        ("--api-url", "http://127.0.0.1:1/api", "demo"),
        ("--timeout", "3", "demo"),
        ("--cache", "/tmp/x.json", "dev-server"),
        ("demo", "--cache", "x"),
        ("demo", "--site-host", "x"),
        ("dev-server", "--api-url", "http://127.0.0.1:1/api"),
        ("dev-server", "--timeout", "3"),
    ],
)
def test_demo_and_dev_server_reject_options_that_mean_nothing_for_them(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...]
) -> None:
    result = run(capsys, *argv)
    assert result.code == 2, result
    assert result.out == ""


def test_dev_server_on_a_busy_port_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = run(capsys, "dev-server", "--port", str(port))
    assert result.code == 2, result
    assert result.err == (
        f"textstack: error: --port {port}: the port is in use on 127.0.0.1; choose another, "
        "or --port 0 for any free port\n"
    )


def test_login_that_cannot_save_says_so_and_fails(
    capsys: pytest.CaptureFixture[str], api_env: FakeTextStackServer, cache_path: pathlib.Path
) -> None:
    cache_path.mkdir(parents=True)  # a folder where the file should be
    approver = Approver(api_env)
    result = run(capsys, "login", "--no-browser")
    approver.code()
    assert result.code == 5, result
    assert "saved" not in result.out and result.out == ""
    last = result.err.strip().splitlines()[-1]
    assert last.startswith("textstack: error: signed in")
    assert f"could not be saved to {cache_path}" in last
    assert "fix:" in last and "--cache" in last
    # The cache's own warnings are shown too, each once.
    warnings = [x for x in result.err.splitlines() if x.startswith("textstack: warning:")]
    assert warnings and len(warnings) == len(set(warnings))


def test_cache_warnings_reach_stderr_without_debug(
    capsys: pytest.CaptureFixture[str], api_env: FakeTextStackServer, cache_path: pathlib.Path
) -> None:
    signed_in(api_env, cache_path)
    os.chmod(cache_path, 0o644)
    for argv in (("status",), ("books",), ("token",)):
        result = run(capsys, *argv)
        warnings = [x for x in result.err.splitlines() if x.startswith("textstack: warning:")]
        assert len(warnings) == 1, (argv, result.err)
        assert f"chmod 600 {cache_path}" in warnings[0]
    cache_path.write_text("{not json")
    os.chmod(cache_path, 0o600)
    result = run(capsys, "status")
    assert result.code == 3
    assert "was corrupt (not valid JSON); moved it to" in result.err


def test_a_dotnet_cache_with_a_null_access_token_is_refreshed(
    capsys: pytest.CaptureFixture[str], api_env: FakeTextStackServer, cache_path: pathlib.Path
) -> None:
    _, refresh = api_env.issue_tokens()
    cache_path.parent.mkdir(parents=True)
    cache_path.write_text(json.dumps({"AccessToken": None, "RefreshToken": refresh}))
    os.chmod(cache_path, 0o600)
    status = run(capsys, "status")
    assert status.code == 0 and "refreshed on next use" in status.out
    assert run(capsys, "books").code == 0
    assert api_env.count("POST /auth/refresh-mobile") == 1
    saved = FileTokenCache(cache_path).load()
    assert saved is not None and saved.access_token and saved.refresh_token != refresh


def test_paged_lists_share_one_footer_and_empty_results_one_word(
    capsys: pytest.CaptureFixture[str], api_env: FakeTextStackServer, cache_path: pathlib.Path
) -> None:
    signed_in(api_env, cache_path)
    total = len(json.loads(run(capsys, "vocabulary", "--json").out)["items"])
    assert total >= 2
    first = run(capsys, "vocabulary", "--limit", "1")
    assert first.out.splitlines()[-1] == f"1 of {total} words; next page: --offset 1"
    last = run(capsys, "vocabulary", "--limit", "1", "--offset", str(total - 1))
    assert last.out.splitlines()[-1] == f"1 of {total} words ({total}-{total})"
    empty = run(capsys, "vocabulary", "--search", "zzzzzz-no-such-word")
    assert empty.out.splitlines()[-2:] == ["(none)", "0 of 0 words"]
    api_env.inject("GET /search", json={"total": 0, "items": []})
    search = run(capsys, "search", "zzzzzz-no-such-word")
    assert search.out.splitlines()[-2:] == ["(none)", "0 of 0 matching chapters"]
    assert "(empty)" not in run(capsys, "shelves").out


def test_a_long_login_timeout_is_not_a_per_request_timeout(
    capsys: pytest.CaptureFixture[str], api_env: FakeTextStackServer
) -> None:
    # 900 s is a fine wait for a person, but more than any one request may take (600 s).
    approver = Approver(api_env)
    result = run(capsys, "login", "--no-browser", "--timeout", "900")
    approver.code()
    assert result.code == 0, result
    assert "Signed in" in result.out


@pytest.mark.parametrize("problem", ["symlink", "loose-folder"])
def test_every_cache_warning_kind_reaches_stderr_once(
    capsys: pytest.CaptureFixture[str],
    api_env: FakeTextStackServer,
    cache_path: pathlib.Path,
    problem: str,
) -> None:
    if problem == "symlink":
        signed_in(api_env, cache_path)
        real = cache_path.with_name("real.json")
        cache_path.rename(real)
        cache_path.symlink_to(real)
        expected = "it is a symbolic link"
        result = run(capsys, "status")
    else:
        # The folder is checked when tokens are saved: at the end of a login.
        cache_path.parent.mkdir(parents=True)
        os.chmod(cache_path.parent, 0o777)
        expected = "writable by"
        approver = Approver(api_env)
        result = run(capsys, "login", "--no-browser")
        approver.code()
        assert result.code == 0, result
    warnings = [x for x in result.err.splitlines() if x.startswith("textstack: warning:")]
    assert len(warnings) == 1, result.err
    assert expected in warnings[0] and str(cache_path.parent) in warnings[0]


def test_login_whose_tokens_could_not_even_be_locked_for_saving_does_not_claim_saved(
    capsys: pytest.CaptureFixture[str], api_env: FakeTextStackServer, cache_path: pathlib.Path
) -> None:
    # The lock file is unusable (a folder where it should be): the approved sign-in
    # is kept in memory and never written, so "tokens saved" would be a false claim.
    cache_path.parent.mkdir(parents=True)
    os.chmod(cache_path.parent, 0o700)
    cache_path.with_name(cache_path.name + ".lock").mkdir()
    approver = Approver(api_env)
    result = run(capsys, "login", "--no-browser")
    approver.code()
    assert "saved to" not in result.out, result
    assert result.code == 5, result
    assert not cache_path.exists()
    last = result.err.strip().splitlines()[-1]
    assert last.startswith("textstack: error: signed in") and "could not be saved" in last
    assert "lock file" in last
