"""gunicorn --preload, 4 sync workers, load across several access-token expiries.

Every request must succeed, and the refreshes must track the expiries (one per access
token generation), not expiries x workers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import pytest

from textstack_sdk import FileTokenCache, TokenSet
from textstack_sdk._jwt import decode_exp
from textstack_sdk.testing import FakeTextStackServer

sys.path.insert(0, str(Path(__file__).parent))
from test_examples import REPO, unix_get, wait_ready

pytestmark = [pytest.mark.slow, pytest.mark.skipif(os.name == "nt", reason="POSIX")]

LIFETIME = 3  # seconds per access token; the load runs across several of them
LOAD_SECONDS = 8.0


@pytest.fixture
def server() -> Iterator[FakeTextStackServer]:
    with FakeTextStackServer(access_token_lifetime=LIFETIME) as srv:
        yield srv


@pytest.mark.timeout(90)
def test_refreshes_track_expiries_not_workers(server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("gunicorn")
    cache_path = tmp_path / "textstack" / "mcp-token.json"
    access, refresh = server.issue_tokens()
    assert FileTokenCache(cache_path).save(TokenSet(access, refresh, decode_exp(access)))
    sock_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"ts-exp-{os.getpid()}"
    sock_dir.mkdir(exist_ok=True)
    sock_path = str(sock_dir / "g.sock")
    log = tmp_path / "gunicorn.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEXTSTACK_")}
    env.update(
        TEXTSTACK_API_URL=server.api_url,
        TEXTSTACK_SITE_HOST=server.site_host,
        TEXTSTACK_MCP_TOKEN_CACHE=str(cache_path),
        TEXTSTACK_MCP_TIMEOUT_SECONDS="5",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    )
    command = [
        sys.executable, "-m", "gunicorn", "--preload", "-w", "4", "-k", "sync",
        "--bind", f"unix:{sock_path}", "--graceful-timeout", "5", "--log-level", "warning",
        "examples.wsgi_app:app",
    ]  # fmt: skip
    with log.open("wb") as log_file:
        proc = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
    statuses: list[int] = []
    lock = threading.Lock()
    try:
        wait_ready(proc, sock_path, log)
        server.reset_counters()
        stop_at = time.monotonic() + LOAD_SECONDS

        def hammer(_: int) -> None:
            while time.monotonic() < stop_at:
                code, _ = unix_get(sock_path, "/books")
                with lock:
                    statuses.append(code)

        with ThreadPoolExecutor(max_workers=6) as pool:
            list(pool.map(hammer, range(6)))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        for leftover in sock_dir.iterdir():
            leftover.unlink()
        sock_dir.rmdir()

    assert statuses, "no request was served"
    assert set(statuses) == {200}, (statuses.count(200), len(statuses), log.read_text()[-2000:])
    bearers = {
        r.headers.get("authorization") for r in server.requests if r.path.endswith("/me/books")
    }
    generations = len(bearers)
    refreshes = server.count("POST /auth/refresh-mobile")
    # Several expiries happened during the load...
    assert generations >= LOAD_SECONDS // LIFETIME
    # ...and each generation cost exactly one refresh across all four workers (the
    # first generation is the seeded one; the last refresh may not have been used yet).
    assert generations - 1 <= refreshes <= generations, (refreshes, generations)
    assert server.count("POST /auth/device/code") == 0
    print(f"\n{len(statuses)} requests, {generations} generations, {refreshes} refreshes")
