"""Faults below HTTP: a TCP proxy cuts, resets, delays and drips the byte stream."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from textstack_sdk import (
    ApiError,
    Authorized,
    FileTokenCache,
    Pending,
    StaticTokenProvider,
    TextStackApiClient,
    TokenManager,
    TransportError,
)
from textstack_sdk.testing import FakeClock, FakeTextStackServer

from . import _budget
from ._chaos_proxy import SAFE_PLANS, ChaosProxy
from ._faults import poller_alive, step_clock
from ._report import scenario
from .test_wire_faults import refresh_is_live

pytestmark = pytest.mark.timeout(180 if _budget.FULL else 90)

TIMEOUT = 1.0

PROXY_API = scenario(
    "transport faults",
    "API calls through a TCP proxy that cuts (FIN), resets (RST), delays and drips bytes",
    "a result or TransportError/ApiError, within the deadline (+0.5 s); the client "
    "works again afterwards",
)
PROXY_LOGIN = scenario(
    "transport faults",
    "device login through the proxy (request cuts, delays, drips)",
    "login completes; the poll thread never dies; the refresh token is live",
)


@pytest.fixture
def server() -> Iterator[FakeTextStackServer]:
    with FakeTextStackServer() as srv:
        yield srv


def test_api_calls_through_a_chaos_proxy(server: FakeTextStackServer) -> None:
    proxy = ChaosProxy(server.port, _budget.SEED)
    access, _ = server.issue_tokens()
    api_url = f"http://127.0.0.1:{proxy.port}/api"
    calls = [
        lambda c: c.search_books("truth"),
        lambda c: c.get_book("pride-and-prejudice"),
        lambda c: c.list_my_books(),
        lambda c: c.save_insight("an insight", edition_id=server.sample_ids["pride-and-prejudice"]),
    ]
    outcomes = {"ok": 0, "error": 0}
    try:
        with TextStackApiClient(
            api_url,
            site_host=server.site_host,
            token_provider=StaticTokenProvider(access),
            timeout=TIMEOUT,
        ) as client:
            for index in range(_budget.PROXY_CALLS):
                started = time.monotonic()
                try:
                    calls[index % len(calls)](client)
                    outcomes["ok"] += 1
                except (TransportError, ApiError):
                    outcomes["error"] += 1
                elapsed = time.monotonic() - started
                assert elapsed <= TIMEOUT + 0.5, elapsed
                PROXY_API.add("calls")
        faults = sum(n for plan, n in proxy.counts.items() if plan != "pass")
    finally:
        proxy.close()
    assert outcomes["error"] > 0 and outcomes["ok"] > 0, outcomes
    # Straight to the server, the same kind of client works.
    with TextStackApiClient(
        server.api_url, site_host=server.site_host, token_provider=StaticTokenProvider(access)
    ) as client:
        assert client.list_my_books()
    PROXY_API.add("connections faulted", faults)


def test_device_login_through_a_chaos_proxy(tmp_path: Path) -> None:
    clock = FakeClock()
    with FakeTextStackServer(clock=clock, interval=5, device_code_lifetime=1800) as server:
        proxy = ChaosProxy(server.port, _budget.SEED + 1, plans=SAFE_PLANS)
        cache = FileTokenCache(tmp_path / "mcp-token.json")
        try:
            with TokenManager(
                api_url=f"http://127.0.0.1:{proxy.port}/api",
                site_host=server.site_host,
                cache=cache,
                clock=clock,
                timeout=TIMEOUT,
                prompt=False,
            ) as tm:
                for _ in range(20):
                    pending = tm.get_token()
                    if isinstance(pending, Pending):
                        break
                    clock.advance(1)
                assert isinstance(pending, Pending)
                user_code = pending.user_code

                def approve_after_eight_polls() -> None:
                    if server.count("POST /auth/device/token") >= 8 and user_code in (
                        server.pending_user_codes()
                    ):
                        server.approve(user_code)

                step_clock(
                    clock, done=lambda: not poller_alive(), between=approve_after_eight_polls
                )
                result = tm.get_token()
                assert isinstance(result, Authorized), tm.status().last_error
            faults = sum(n for plan, n in proxy.counts.items() if plan != "pass")
        finally:
            proxy.close()
        stored = cache.load()
        assert stored is not None and refresh_is_live(server, stored.refresh_token)
    PROXY_LOGIN.add("connections faulted", faults)
    PROXY_LOGIN.add("logins completed")


TRUNCATED_HEAD = scenario(
    "transport faults",
    "connection closed in the middle of the response headers (no blank line)",
    "TransportError, never a complete-looking 200 with an empty body",
)


@pytest.mark.parametrize("retry_safe", [False, True])
def test_response_head_cut_before_the_blank_line_is_a_transport_error(
    retry_safe: bool,
) -> None:
    import socket
    import threading

    from textstack_sdk._http import Request
    from textstack_sdk._transport import Urllib3Transport

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)

    def answer() -> None:
        for _ in range(3):  # the first try and up to two retries
            conn, _ = listener.accept()
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
            conn.close()

    threading.Thread(target=answer, daemon=True).start()
    transport = Urllib3Transport(timeout=2, backoff=0.0)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/api/x"
    TRUNCATED_HEAD.add("cut responses")
    try:
        with pytest.raises(TransportError):
            transport.handle_request(Request("GET", url, route="GET /x", retry_safe=retry_safe))
    finally:
        transport.close()
        listener.close()
