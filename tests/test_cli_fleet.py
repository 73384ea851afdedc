"""``textstack login | status | logout`` with ``TEXTSTACK_TOKEN_STORE``: the fleet's login,
against a real redis-server and the local server over real sockets."""

# ruff: noqa: F811 - pytest fixtures imported from the harness are parameters here

from __future__ import annotations

import json
import os
import pathlib
import threading
import webbrowser
from collections.abc import Iterator
from typing import Any

import pytest
from _redis_harness import RedisProcess, redis_binary, shared_redis  # noqa: F401

from textstack_sdk._redis_store import RedisTokenStore
from textstack_sdk._store import RecordState
from textstack_sdk.cli import main
from textstack_sdk.testing import FakeTextStackServer

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def server() -> Iterator[FakeTextStackServer]:
    with FakeTextStackServer(interval=0.05) as srv:
        yield srv


@pytest.fixture
def store_url(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: pathlib.Path,
    server: FakeTextStackServer,
    shared_redis: RedisProcess,
) -> Iterator[str]:
    for name in list(os.environ):
        if name.startswith("TEXTSTACK_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("TEXTSTACK_MIN_POLL_INTERVAL", "0")
    monkeypatch.setenv("TEXTSTACK_API_URL", server.api_url)
    monkeypatch.setenv("TEXTSTACK_SITE_HOST", server.site_host)
    monkeypatch.setenv("TEXTSTACK_TOKEN_STORE", shared_redis.url)
    monkeypatch.setattr(webbrowser, "open", lambda *a, **k: True)
    store = RedisTokenStore(shared_redis.url)
    yield shared_redis.url
    # The default namespace is shared by every test of this module: leave it empty.
    client = shared_redis.client()
    try:
        keys = client.keys("{textstack:default}:*")
        if keys:
            client.delete(*keys)
    finally:
        client.close()
    store.close()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(list(argv))
    return code, capsys.readouterr().out


def approve_next(server: FakeTextStackServer) -> threading.Thread:
    def work() -> None:
        server.approve(server.wait_for_user_code(timeout=10))

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def test_login_goes_into_the_store_and_every_host_uses_it(
    capsys: pytest.CaptureFixture[str], server: FakeTextStackServer, store_url: str
) -> None:
    approver = approve_next(server)
    code, out = run(capsys, "login", "--no-browser", "--timeout", "10")
    approver.join(10)
    assert code == 0, out
    assert "tokens saved to" not in out, "nothing is written on this host's disk"
    record = RedisTokenStore(store_url).load()
    assert record.state is RecordState.LIVE and record.tokens is not None
    # Another host: a new process reading the same store, signed in without a sign-in.
    code, out = run(capsys, "books")
    assert code == 0, out
    assert server.count("POST /auth/device/code") == 1
    status: dict[str, Any] = json.loads(run(capsys, "status", "--json")[1])
    assert status["store"]["state"] == "live"
    assert status["store"]["version"] == record.version
    assert "@" not in status["store"]["location"] or "***" in status["store"]["location"]
    text = run(capsys, "status")[1]
    assert "token store" in text and f"version {record.version}" in text


def test_logout_logs_out_the_whole_fleet(
    capsys: pytest.CaptureFixture[str], server: FakeTextStackServer, store_url: str
) -> None:
    approver = approve_next(server)
    assert run(capsys, "login", "--no-browser", "--timeout", "10")[0] == 0
    approver.join(10)
    code, out = run(capsys, "logout")
    assert code == 0 and "every host" in out
    assert RedisTokenStore(store_url).load().state is RecordState.TOMBSTONE
    status = json.loads(run(capsys, "status", "--json")[1])
    assert status["store"]["state"] == "tombstone"
    assert status["has_refresh_token"] is False


def test_status_names_a_store_it_cannot_reach(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, store_url: str
) -> None:
    from _servers import closed_port

    monkeypatch.setenv("TEXTSTACK_TOKEN_STORE", f"redis://:s3cret@127.0.0.1:{closed_port()}/0")
    code, out = run(capsys, "status", "--json")
    assert code == 3, "not signed in, as far as this host can tell"
    data = json.loads(out)
    assert data["store"]["state"] == "unreachable"
    assert "s3cret" not in out
