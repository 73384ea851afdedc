"""The examples run, each against FakeTextStackServer over real sockets.

* ``examples/quickstart.py``: in-process through ``main()`` (signed in, ``--login``) and
  as a script (no sign-in: exit 3, nothing user-scoped sent).
* ``examples/notebook.ipynb``: executed headless in a real kernel with nbclient, cell by
  cell around the approval (skipped when the ``notebook`` extra is not installed).
* ``examples/wsgi_app.py``: in-process through ``wsgiref.validate`` (every route, the 503
  while a sign-in is pending, 502 on upstream failures), and served by gunicorn with
  ``--preload`` and 4 sync workers.

The only real waits are bounded: the device poll's 1 s floor (the token manager's
RFC 8628 minimum) and a subprocess starting up.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import types
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Optional
from wsgiref.util import setup_testing_defaults
from wsgiref.validate import validator

import pytest
from _servers import closed_port

from textstack_sdk import (
    FileTokenCache,
    StaticTokenProvider,
    TextStackApiClient,
    TokenManager,
    TokenSet,
)
from textstack_sdk._jwt import decode_exp
from textstack_sdk.testing import FakeTextStackServer

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"

DEVICE_CODE = "POST /auth/device/code"
REFRESH = "POST /auth/refresh-mobile"
USER_ROUTES = "GET /me/*"

# What the fake server's library holds (textstack_sdk/testing/_library_data.py).
CATALOG_HIGHLIGHT = "It is a truth universally acknowledged"
UPLOAD_LINE = "The Art of War by Sun Tzu"
UPLOAD_HIGHLIGHT = "a matter of life and death"


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture
def server() -> Iterator[FakeTextStackServer]:
    with FakeTextStackServer(interval=0.05) as srv:
        yield srv


@pytest.fixture
def cache_path(tmp_path: Path) -> Path:
    return tmp_path / "textstack" / "mcp-token.json"


@pytest.fixture
def example_env(server: FakeTextStackServer, cache_path: Path) -> dict[str, str]:
    """The environment an example runs with: the local server and a private cache."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("TEXTSTACK_") and key != "XDG_CONFIG_HOME"
    }
    env.update(
        TEXTSTACK_API_URL=server.api_url,
        TEXTSTACK_SITE_HOST=server.site_host,
        TEXTSTACK_MCP_TOKEN_CACHE=str(cache_path),
        TEXTSTACK_MCP_TIMEOUT_SECONDS="5",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    )
    return env


@pytest.fixture
def use_env(monkeypatch: pytest.MonkeyPatch, example_env: dict[str, str]) -> dict[str, str]:
    """Makes ``example_env`` this process's environment, for in-process runs."""
    for key in list(os.environ):
        if key not in example_env:
            monkeypatch.delenv(key)
    for key, value in example_env.items():
        monkeypatch.setenv(key, value)
    return example_env


def seed(server: FakeTextStackServer, path: Path) -> None:
    """A finished login in the cache file, as ``textstack login`` leaves it."""
    access, refresh = server.issue_tokens()
    assert FileTokenCache(path).save(TokenSet(access, refresh, decode_exp(access)))


def load_example(name: str) -> types.ModuleType:
    """Imports ``examples/<name>.py`` under a private module name (runs its top level)."""
    spec = importlib.util.spec_from_file_location(f"_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def approve_when_pending(server: FakeTextStackServer) -> threading.Thread:
    """Plays the person: approves the first user code that shows up."""

    def approve() -> None:
        server.approve(server.wait_for_user_code(timeout=15))

    thread = threading.Thread(target=approve, daemon=True)
    thread.start()
    return thread


# ---------------------------------------------------------------------------- quickstart


@pytest.mark.timeout(20)
@pytest.mark.usefixtures("use_env")
def test_quickstart_signed_in_reads_catalog_books_and_highlights(
    server: FakeTextStackServer, cache_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(server, cache_path)
    quickstart = load_example("quickstart")

    assert quickstart.main([]) == 0

    out = capsys.readouterr().out
    assert "1 chapter(s) match 'truth universally acknowledged'" in out
    assert "Pride and Prejudice by Jane Austen: 3 chapters" in out
    assert f"your highlight: '{CATALOG_HIGHLIGHT}'" in out
    assert UPLOAD_LINE in out
    assert f"highlight: '{UPLOAD_HIGHLIGHT}'" in out
    assert server.count(DEVICE_CODE) == 0
    assert server.count("GET /me/books") == 1


@pytest.mark.timeout(30)
def test_quickstart_script_without_sign_in_exits_3_and_sends_nothing_user_scoped(
    server: FakeTextStackServer, example_env: dict[str, str]
) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py"), "truth"],
        env=example_env,
        capture_output=True,
        text=True,
        timeout=25,
        check=False,
    )

    assert done.returncode == 3, done.stderr
    [user_code] = server.pending_user_codes()
    assert f"enter code {user_code} to connect TextStack" in done.stderr
    assert "textstack login" in done.stderr
    assert "Traceback" not in done.stderr
    assert "Pride and Prejudice by Jane Austen" in done.stdout  # the catalog needs no sign-in
    assert server.count(USER_ROUTES) == 0  # no request without a token
    assert server.count(DEVICE_CODE) == 1


@pytest.mark.timeout(30)
@pytest.mark.usefixtures("use_env")
def test_quickstart_login_waits_for_approval_then_lists_books(
    server: FakeTextStackServer, capsys: pytest.CaptureFixture[str]
) -> None:
    quickstart = load_example("quickstart")
    approver = approve_when_pending(server)

    assert quickstart.main(["--login"]) == 0

    approver.join(5)
    captured = capsys.readouterr()
    assert "to connect TextStack" in captured.err  # the prompt went to stderr
    assert UPLOAD_LINE in captured.out
    assert server.count(DEVICE_CODE) == 1


# ---------------------------------------------------------------------------- notebook


def _outputs(cell: Any, mime: str) -> str:
    """Everything a cell showed as ``mime`` (``stream`` for stdout/stderr text)."""
    parts = []
    for output in cell.get("outputs", []):
        if mime == "stream" and output.get("output_type") == "stream":
            parts.append(output.get("text", ""))
        elif mime in output.get("data", {}):
            parts.append(output["data"][mime])
    return "".join(parts)


def _errors(cell: Any) -> list[str]:
    return [
        f"{o.get('ename')}: {o.get('evalue')}"
        for o in cell.get("outputs", [])
        if o.get("output_type") == "error"
    ]


@pytest.mark.timeout(90)
def test_notebook_shows_sign_in_link_then_lists_books_after_approval(
    server: FakeTextStackServer, example_env: dict[str, str], tmp_path: Path
) -> None:
    try:
        import nbformat
        from nbclient import NotebookClient
    except ImportError:
        pytest.skip(
            "nbclient/nbformat not installed: pip install -e '.[notebook]' (tox -e notebook)"
        )
    if importlib.util.find_spec("ipykernel") is None:
        pytest.skip("ipykernel not installed: pip install -e '.[notebook]' (tox -e notebook)")

    nb = nbformat.read(EXAMPLES / "notebook.ipynb", as_version=4)  # type: ignore[no-untyped-call]
    nbformat.validate(nb)
    code = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"]
    assert len(code) == 3, "setup, sign-in, user-scoped call"
    setup, sign_in, books = code
    assert all(not nb.cells[i].get("outputs") for i in code), "commit the notebook without outputs"

    env = dict(example_env, IPYTHONDIR=str(tmp_path / "ipython"), JUPYTER_PLATFORM_DIRS="1")
    runner = NotebookClient(
        nb,
        timeout=30,  # per cell: a cell that blocked on the person would fail here
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    with runner.setup_kernel(env=env):
        runner.execute_cell(nb.cells[setup], setup)
        assert "TextStackApiClient(api_url=" in _outputs(nb.cells[setup], "text/plain")

        started = time.monotonic()
        runner.execute_cell(nb.cells[sign_in], sign_in)
        assert time.monotonic() - started < 10, "get_token() must not wait for the person"
        shown = _outputs(nb.cells[sign_in], "text/html")
        link = re.search(r'<a href="(http://127\.0\.0\.1:\d+/device\?code=([A-Z0-9-]+))"', shown)
        assert link is not None, shown
        user_code = link.group(2)
        assert server.pending_user_codes() == [user_code]
        assert "<code" in shown and f">{user_code}</code>" in shown
        assert user_code in _outputs(nb.cells[sign_in], "text/markdown")
        assert user_code in _outputs(nb.cells[sign_in], "text/plain")
        assert _outputs(nb.cells[sign_in], "stream") == ""  # no stderr prompt (prompt=False)

        # Run before approving: the same sign-in again, at once, and no error.
        runner.execute_cell(nb.cells[books], books)
        assert user_code in _outputs(nb.cells[books], "text/html")
        assert UPLOAD_LINE not in _outputs(nb.cells[books], "stream")
        assert server.count(USER_ROUTES) == 0

        server.approve(user_code)
        # The person waits a moment for the approval to arrive; this cell (not part of
        # the notebook) does the waiting, bounded, so the re-run below is deterministic.
        waiter = nbformat.v4.new_code_cell(  # type: ignore[no-untyped-call]
            "tokens.wait_for_token(timeout=15);"
        )
        nb.cells.append(waiter)
        runner.execute_cell(waiter, len(nb.cells) - 1)
        assert not _errors(waiter), _errors(waiter)

        runner.execute_cell(nb.cells[books], books)  # "then re-run the next cell"
        listed = _outputs(nb.cells[books], "stream")
        assert not _errors(nb.cells[books]), _errors(nb.cells[books])
        assert UPLOAD_LINE in listed
        assert "Meditations by Marcus Aurelius" in listed

    assert server.count(DEVICE_CODE) == 1
    assert server.count("GET /me/books") == 1


# ---------------------------------------------------------------------------- wsgi app


@pytest.fixture
def wsgi(use_env: dict[str, str]) -> Iterator[types.ModuleType]:
    """examples/wsgi_app.py imported with the example environment (empty cache)."""
    module = load_example("wsgi_app")
    try:
        yield module
    finally:
        module.client.close()


def call(
    app: Any, path: str, *, method: str = "GET", query: str = ""
) -> tuple[int, dict[str, str], Any]:
    """One request through ``wsgiref.validate`` (which checks WSGI compliance)."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": query,
    }
    setup_testing_defaults(environ)
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        seen["status"], seen["headers"] = status, dict(headers)
        return lambda data: None

    result = validator(app)(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        getattr(result, "close", lambda: None)()
    assert seen["headers"]["Content-Type"].startswith("application/json")
    assert int(seen["headers"]["Content-Length"]) == len(body)
    return int(seen["status"].split()[0]), seen["headers"], json.loads(body)


@pytest.mark.timeout(30)
def test_wsgi_books_answers_503_at_once_while_sign_in_pending_then_200(
    server: FakeTextStackServer, wsgi: types.ModuleType
) -> None:
    started = time.monotonic()
    status, headers, body = call(wsgi.app, "/books")
    assert time.monotonic() - started < 5, "a request must never wait for the person"

    assert status == 503
    assert headers["Retry-After"] == "10"
    [user_code] = server.pending_user_codes()
    assert body["error"] == "sign_in_required"
    assert body["user_code"] == user_code
    assert body["verification_uri"] == f"{server.base_url}/device"
    assert f"enter code {user_code} to connect TextStack" in body["message"]
    assert server.count(USER_ROUTES) == 0

    # A second request shows the same sign-in; it does not start another.
    assert call(wsgi.app, "/books")[2]["user_code"] == user_code
    assert server.count(DEVICE_CODE) == 1

    server.approve(user_code)
    provider = wsgi.client.token_provider
    assert isinstance(provider, TokenManager)
    provider.wait_for_token(timeout=15)  # the background poll brings the tokens
    status, _, body = call(wsgi.app, "/books")
    assert status == 200
    assert {book["title"] for book in body["books"]} == {"The Art of War", "Meditations"}
    assert server.count(DEVICE_CODE) == 1


@pytest.mark.timeout(30)
def test_wsgi_routes_and_upstream_failures(
    server: FakeTextStackServer, wsgi: types.ModuleType
) -> None:
    access, _ = server.issue_tokens()
    with TextStackApiClient(
        server.api_url, site_host=server.site_host, token_provider=StaticTokenProvider(access)
    ) as client:
        app = wsgi.create_app(client)

        status, _, body = call(app, "/healthz")
        assert (status, body) == (200, {"status": "ok"})

        status, _, body = call(app, "/search", query="q=Ishmael")
        assert status == 200
        assert body["total"] >= 1
        assert body["items"][0]["edition"]["title"].startswith("Moby-Dick")

        status, _, body = call(app, "/books")
        assert status == 200
        assert {book["title"] for book in body["books"]} == {"The Art of War", "Meditations"}

        assert call(app, "/search")[0] == 400
        assert call(app, "/search", query="q=%20")[0] == 400
        assert call(app, "/nope")[0] == 404
        status, headers, _ = call(app, "/books", method="POST")
        assert (status, headers["Allow"]) == (405, "GET, HEAD")

        server.inject("GET /me/books", status=500, json={"error": "boom", "message": "db down"})
        status, _, body = call(app, "/books")
        assert (status, body["error"]) == (502, "upstream")
        assert "db down" in body["message"]

        server.inject(
            "GET /search", status=404, body="<html>proxy</html>", content_type="text/html"
        )
        assert call(app, "/search", query="q=Ishmael")[0] == 502

    with TextStackApiClient(
        f"http://127.0.0.1:{closed_port()}/api",
        site_host=server.site_host,
        token_provider=StaticTokenProvider(access),
        timeout=2,
    ) as unreachable:
        status, _, body = call(wsgi.create_app(unreachable), "/search", query="q=Ishmael")
        assert (status, body["error"]) == (502, "upstream")


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP/1.1 over a unix socket (where gunicorn listens in the test)."""

    def __init__(self, path: str, timeout: float = 10.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self._socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def unix_get(path: str, target: str) -> tuple[int, Any]:
    conn = UnixHTTPConnection(path)
    try:
        conn.request("GET", target)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def wait_ready(proc: subprocess.Popen[bytes], sock_path: str, log: Path) -> None:
    """Polls /healthz until gunicorn answers (bounded); fails early if it exits."""
    deadline = time.monotonic() + 20
    while True:
        if proc.poll() is not None:
            pytest.fail(f"gunicorn exited with {proc.returncode}:\n{log.read_text()}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            if unix_get(sock_path, "/healthz") == (200, {"status": "ok"}):
                return
        if time.monotonic() > deadline:
            pytest.fail(f"gunicorn not ready within 20 s:\n{log.read_text()}")
        time.sleep(0.05)


@pytest.fixture
def short_dir() -> Iterator[str]:
    """A short directory for a unix socket (their paths are limited to ~100 bytes)."""
    path = tempfile.mkdtemp(prefix="ts-wsgi-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_wsgi_app_under_gunicorn_preload_with_4_workers(
    server: FakeTextStackServer,
    example_env: dict[str, str],
    cache_path: Path,
    tmp_path: Path,
    short_dir: str,
) -> None:
    pytest.importorskip("gunicorn")
    seed(server, cache_path)  # "textstack login" was run once as the service user
    sock_path = os.path.join(short_dir, "gunicorn.sock")
    log = tmp_path / "gunicorn.log"
    # The master uses the preloaded client (connection pool, token state) before it forks:
    # each worker must start over with its own, not share the master's sockets.
    hooks = tmp_path / "gunicorn_hooks.py"
    hooks.write_text(
        "import sys\n"
        "def when_ready(server):\n"
        "    sys.modules['examples.wsgi_app'].client.list_my_books()\n"
    )
    command = [
        sys.executable, "-m", "gunicorn",
        "--preload", "-w", "4", "-k", "sync",
        "--bind", f"unix:{sock_path}",
        "--graceful-timeout", "5",
        "--log-level", "warning",
        "-c", str(hooks),
        "examples.wsgi_app:app",
    ]  # fmt: skip
    with log.open("wb") as log_file:
        proc = subprocess.Popen(
            command, cwd=REPO, env=example_env, stdout=log_file, stderr=subprocess.STDOUT
        )
    try:
        wait_ready(proc, sock_path, log)
        assert server.count("GET /me/books") == 1  # the master's call, before the fork
        server.reset_counters()

        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(lambda _: unix_get(sock_path, "/books"), range(40)))
        status, found = unix_get(sock_path, "/search?q=Ishmael")

        assert [code for code, _ in answers] == [200] * 40, log.read_text()
        for _, body in answers:
            assert {book["title"] for book in body["books"]} == {"The Art of War", "Meditations"}
        assert status == 200
        assert found["items"][0]["edition"]["slug"] == "moby-dick"
        assert server.count("GET /me/books") == 40
        assert server.count(REFRESH) == 0  # the cached access token is still fresh
        assert server.count(DEVICE_CODE) == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            returncode: Optional[int] = proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
            returncode = None
    assert returncode == 0, log.read_text()
