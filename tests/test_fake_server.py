"""FakeTextStackServer over real sockets: device flow, rotation, JWTs, Host check, faults.

The SDK client is not used here: requests go through http.client (or a raw socket
where the bytes on the wire matter).
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest

import textstack_sdk
from textstack_sdk.testing import FakeClock, FakeTextStackServer

GRANT = "urn:ietf:params:oauth:grant-type:device_code"
USER_KEYS = {"id", "email", "name", "picture", "isGuest", "createdAt", "nativeLanguage"}
NGINX_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Wire:
    """One keep-alive connection to the server, speaking the API's conventions."""

    def __init__(self, server: FakeTextStackServer, timeout: float = 5.0) -> None:
        self.server = server
        self.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: Optional[str] = None,
        raw: Optional[bytes] = None,
        host: Optional[str] = None,
        headers: Optional[dict[str, str]] = None,
    ) -> Answer:
        sent = {"Host": host if host is not None else self.server.site_host}
        if body is not None:
            raw = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        sent.update(headers or {})
        target = path if path.startswith("/device") else "/api" + path
        self.conn.request(method, target, body=raw, headers=sent)
        response = self.conn.getresponse()
        data = response.read()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, data)

    def poll(self, device_code: str) -> Answer:
        return self.call(
            "POST", "/auth/device/token", {"grant_type": GRANT, "device_code": device_code}
        )

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def server(clock: FakeClock) -> Iterator[FakeTextStackServer]:
    with FakeTextStackServer(clock=clock) as running:
        yield running


@pytest.fixture
def wire(server: FakeTextStackServer) -> Iterator[Wire]:
    w = Wire(server)
    yield w
    w.close()


@pytest.fixture
def token(server: FakeTextStackServer) -> str:
    return server.issue_tokens()[0]


def jwt_part(token: str, index: int) -> dict[str, Any]:
    segment = token.split(".")[index]
    decoded = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    assert isinstance(decoded, dict)
    return decoded


# -- device flow --------------------------------------------------------------------------


def test_device_flow_happy_path(server: FakeTextStackServer, wire: Wire, clock: FakeClock) -> None:
    code = wire.call("POST", "/auth/device/code")
    assert code.status == 200
    flow = code.json()
    assert set(flow) == {
        "device_code",
        "user_code",
        "verification_uri",
        "verification_uri_complete",
        "expires_in",
        "interval",
    }
    assert re.fullmatch(r"[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}", flow["user_code"])
    assert flow["verification_uri"] == f"{server.base_url}/device"
    assert flow["verification_uri_complete"] == f"{server.base_url}/device?code={flow['user_code']}"
    assert (flow["expires_in"], flow["interval"]) == (600, 5)
    assert server.pending_user_codes() == [flow["user_code"]]
    assert server.wait_for_user_code(timeout=1) == flow["user_code"]

    pending = wire.poll(flow["device_code"])
    assert (pending.status, pending.json()) == (400, {"error": "authorization_pending"})
    server.approve(flow["user_code"])
    assert server.pending_user_codes() == []
    clock.advance(5)
    done = wire.poll(flow["device_code"])
    assert done.status == 200
    tokens = done.json()
    assert set(tokens) == {"access_token", "refresh_token", "token_type", "user"}
    assert tokens["token_type"] == "Bearer"
    assert set(tokens["user"]) == USER_KEYS
    assert done.headers["cache-control"] == "no-store"

    header, payload = jwt_part(tokens["access_token"], 0), jwt_part(tokens["access_token"], 1)
    assert header["alg"] == "ES256"
    assert set(payload) == {"sub", "exp", "iat", "jti"}
    assert payload["sub"] == server.user_id == tokens["user"]["id"]
    assert payload["exp"] == clock.time() + 900
    sock = wire.conn.sock
    books = wire.call("GET", "/me/books", token=tokens["access_token"])
    assert books.status == 200
    assert wire.conn.sock is sock is not None  # one keep-alive connection throughout
    assert server.count("POST /auth/device/token") == 2


def test_device_code_expires(server: FakeTextStackServer, wire: Wire, clock: FakeClock) -> None:
    server.device_code_lifetime = 30
    flow = wire.call("POST", "/auth/device/code").json()
    assert flow["expires_in"] == 30
    clock.advance(30)
    assert wire.poll(flow["device_code"]).json() == {"error": "expired_token"}
    assert server.pending_user_codes() == []
    with pytest.raises(ValueError, match="expired_user_code"):
        server.approve(flow["user_code"])


def test_device_code_is_redeemed_once(
    server: FakeTextStackServer, wire: Wire, clock: FakeClock
) -> None:
    flow = wire.call("POST", "/auth/device/code").json()
    server.approve(flow["user_code"])
    assert wire.poll(flow["device_code"]).status == 200
    clock.advance(5)
    again = wire.poll(flow["device_code"])
    assert (again.status, again.json()) == (400, {"error": "expired_token"})
    with pytest.raises(ValueError, match="user_code_already_used"):
        server.approve(flow["user_code"])


def test_slow_down_adds_five_seconds_for_that_code(
    server: FakeTextStackServer, wire: Wire, clock: FakeClock
) -> None:
    flow = wire.call("POST", "/auth/device/code").json()
    other = wire.call("POST", "/auth/device/code").json()
    assert wire.poll(flow["device_code"]).json()["error"] == "authorization_pending"
    clock.advance(4.9)
    assert wire.poll(flow["device_code"]).json() == {"error": "slow_down"}
    clock.advance(10)  # the new interval is 10 s
    assert wire.poll(flow["device_code"]).json()["error"] == "authorization_pending"
    clock.advance(9.5)
    assert wire.poll(flow["device_code"]).json()["error"] == "slow_down"
    # another flow keeps its own 5 s pace
    assert wire.poll(other["device_code"]).json()["error"] == "authorization_pending"
    clock.advance(5)
    assert wire.poll(other["device_code"]).json()["error"] == "authorization_pending"


def test_denied_flow(server: FakeTextStackServer, wire: Wire) -> None:
    flow = wire.call("POST", "/auth/device/code").json()
    server.deny(flow["user_code"])
    assert wire.poll(flow["device_code"]).json() == {"error": "access_denied"}
    with pytest.raises(ValueError, match="user_code_already_used"):
        server.approve(flow["user_code"])


def test_token_request_validation(wire: Wire) -> None:
    wrong = wire.call("POST", "/auth/device/token", {"grant_type": "password", "device_code": "x"})
    assert wrong.json() == {"error": "unsupported_grant_type"}
    missing = wire.call("POST", "/auth/device/token", {"grant_type": GRANT})
    assert (missing.status, missing.json()) == (400, {"error": "invalid_request"})
    unknown = wire.call("POST", "/auth/device/token", {"grant_type": GRANT, "device_code": "zz"})
    assert unknown.json() == {"error": "expired_token"}


def test_approve_and_deny_endpoints(server: FakeTextStackServer, wire: Wire) -> None:
    flow = wire.call("POST", "/auth/device/code").json()
    loose = flow["user_code"].lower().replace("-", "")
    ok = wire.call("POST", "/auth/device/approve", {"user_code": loose})
    assert (ok.status, ok.json()) == (200, {"status": "ok"})
    again = wire.call("POST", "/auth/device/deny", {"user_code": flow["user_code"]})
    assert (again.status, again.json()) == (400, {"error": "user_code_already_used"})
    bad = wire.call("POST", "/auth/device/approve", {"user_code": "BBBB-BBBB"})
    assert bad.json() == {"error": "invalid_user_code"}
    assert wire.poll(flow["device_code"]).status == 200


def test_approval_api_can_require_a_bearer(server: FakeTextStackServer, wire: Wire) -> None:
    server.approval_requires_auth = True
    flow = wire.call("POST", "/auth/device/code").json()
    body = {"user_code": flow["user_code"]}
    assert_bearer_refused(wire.call("POST", "/auth/device/approve", body))
    signed_in = server.issue_tokens()[0]
    assert wire.call("POST", "/auth/device/approve", body, token=signed_in).status == 200


def test_device_page_form_approves(server: FakeTextStackServer, wire: Wire) -> None:
    flow = wire.call("POST", "/auth/device/code").json()
    # A browser sends host:port, which the page must accept.
    page = wire.call("GET", f"/device?code={flow['user_code']}", host=f"127.0.0.1:{server.port}")
    assert page.status == 200
    assert page.headers["content-type"].startswith("text/html")
    assert f"value='{flow['user_code']}'" in page.body.decode()
    assert "Approve" in page.body.decode() and "Deny" in page.body.decode()
    form = f"user_code={flow['user_code']}&action=approve".encode()
    result = wire.call(
        "POST",
        "/device",
        raw=form,
        host=f"127.0.0.1:{server.port}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert result.status == 200
    assert "data-outcome='approve'" in result.body.decode()
    assert wire.poll(flow["device_code"]).status == 200
    twice = wire.call("POST", "/device", raw=form, host="localhost")
    assert twice.status == 400
    assert "already been used" in twice.body.decode()


def test_device_page_escapes_what_it_echoes(wire: Wire) -> None:
    evil = "%27%3E%3Cscript%3Ealert(1)%3C/script%3E"
    page = wire.call("GET", f"/device?code={evil}").body.decode()
    assert "<script>" not in page
    assert "&#x27;&gt;&lt;script&gt;" in page
    denied = wire.call("POST", "/device", raw=f"user_code={evil}&action=deny".encode())
    assert denied.status == 400
    assert "<script>" not in denied.body.decode()


@pytest.mark.timeout(5)
def test_wait_for_user_code_is_bounded(server: FakeTextStackServer, wire: Wire) -> None:
    with pytest.raises(TimeoutError):
        server.wait_for_user_code(timeout=0.05)
    first = wire.call("POST", "/auth/device/code").json()["user_code"]
    second = wire.call("POST", "/auth/device/code").json()["user_code"]
    assert server.wait_for_user_code(timeout=1) == second
    assert server.wait_for_user_code(timeout=1, exclude=[second]) == first


def test_interval_options(clock: FakeClock) -> None:
    with FakeTextStackServer(clock=clock, interval=0.05, include_interval=True) as server:
        wire = Wire(server)
        assert wire.call("POST", "/auth/device/code").json()["interval"] == 0.05
        server.include_interval = False
        assert "interval" not in wire.call("POST", "/auth/device/code").json()
        wire.close()


# -- refresh rotation ---------------------------------------------------------------------


def refresh(wire: Wire, token: str) -> Answer:
    return wire.call("POST", "/auth/refresh-mobile", {"refreshToken": token})


def test_refresh_rotates(server: FakeTextStackServer, wire: Wire) -> None:
    server.reuse_detection = False
    _, first = server.issue_tokens()
    answer = refresh(wire, first)
    assert answer.status == 200
    body = answer.json()
    assert set(body) == {"user", "accessToken", "refreshToken"}
    assert set(body["user"]) == USER_KEYS
    assert body["refreshToken"] != first
    old = refresh(wire, first)
    assert (old.status, old.json()) == (401, {"error": "invalid_grant"})
    assert refresh(wire, body["refreshToken"]).status == 200
    assert refresh(wire, "never-issued").status == 401


def test_reuse_of_a_rotated_token_revokes_the_family(
    server: FakeTextStackServer, wire: Wire
) -> None:
    _, first = server.issue_tokens()
    bystander_access, bystander = server.issue_tokens()
    second = refresh(wire, first).json()
    assert refresh(wire, first).status == 401  # replay: theft suspected
    assert refresh(wire, second["refreshToken"]).status == 401  # the family is dead
    # Access tokens survive by default; other logins are untouched.
    assert wire.call("GET", "/me/books", token=second["accessToken"]).status == 200
    assert refresh(wire, bystander).status == 200
    assert wire.call("GET", "/me/books", token=bystander_access).status == 200
    assert server.count("POST /auth/refresh-mobile") == 4


def test_reuse_detection_can_revoke_access_tokens(server: FakeTextStackServer, wire: Wire) -> None:
    server.revoke_access_on_reuse = True
    first_access, first = server.issue_tokens()
    second = refresh(wire, first).json()
    assert refresh(wire, first).status == 401
    for access in (first_access, second["accessToken"]):
        assert wire.call("GET", "/me/books", token=access).status == 401


@pytest.mark.parametrize(("mode", "expected"), [("null", None), ("empty", ""), ("missing", ...)])
def test_refresh_without_new_refresh_token(
    server: FakeTextStackServer, wire: Wire, mode: str, expected: Any
) -> None:
    server.refresh_token_mode = mode
    _, first = server.issue_tokens()
    body = refresh(wire, first).json()
    if expected is ...:
        assert "refreshToken" not in body
    else:
        assert body["refreshToken"] == expected
    assert refresh(wire, first).status == 200  # not rotated, so still valid


@pytest.mark.timeout(10)
def test_concurrent_refreshes_of_one_token_rotate_once(server: FakeTextStackServer) -> None:
    server.reuse_detection = False
    _, shared = server.issue_tokens()
    barrier = threading.Barrier(12)
    statuses: list[int] = []

    def worker() -> None:
        wire = Wire(server)
        barrier.wait()
        statuses.append(refresh(wire, shared).status)
        wire.close()

    threads = [threading.Thread(target=worker) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] + [401] * 11
    assert server.count("POST /auth/refresh-mobile") == 12


def test_malformed_refresh_body(wire: Wire) -> None:
    assert wire.call("POST", "/auth/refresh-mobile", raw=b"{not json").status == 400
    assert wire.call("POST", "/auth/refresh-mobile", {"refresh_token": "x"}).status == 400


# -- bearer verification ------------------------------------------------------------------


def assert_bearer_refused(answer: Answer) -> None:
    assert answer.status == 401
    assert answer.headers["www-authenticate"] == 'Bearer error="invalid_token"'


def test_missing_or_malformed_bearer(wire: Wire, token: str) -> None:
    assert_bearer_refused(wire.call("GET", "/me/books"))
    assert_bearer_refused(wire.call("GET", "/me/books", headers={"Authorization": token}))
    assert_bearer_refused(wire.call("GET", "/me/books", token="not.a.jwt"))
    assert wire.call("GET", "/me/books", token=token).status == 200


def test_bad_signature_is_refused(server: FakeTextStackServer, wire: Wire, token: str) -> None:
    head, payload, signature = token.split(".")
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    assert_bearer_refused(wire.call("GET", "/me/books", token=f"{head}.{payload}.{flipped}"))
    with FakeTextStackServer() as other:
        foreign = other.issue_tokens()[0]
    assert_bearer_refused(wire.call("GET", "/me/books", token=foreign))
    unsigned = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
    assert_bearer_refused(wire.call("GET", "/me/books", token=f"{unsigned}.{payload}."))


def test_expiry_follows_the_server_clock(
    server: FakeTextStackServer, wire: Wire, clock: FakeClock
) -> None:
    server.access_token_lifetime = 60
    access, _ = server.issue_tokens()
    assert jwt_part(access, 1)["exp"] == clock.time() + 60
    clock.advance(59)
    assert wire.call("GET", "/me/books", token=access).status == 200
    clock.advance(1)
    assert_bearer_refused(wire.call("GET", "/me/books", token=access))


@pytest.mark.parametrize("exp", ["1900000000", None, True, [1], -1])
def test_make_jwt_odd_exp_is_refused(server: FakeTextStackServer, wire: Wire, exp: Any) -> None:
    crafted = server.make_jwt({"sub": server.user_id, "exp": exp})
    assert_bearer_refused(wire.call("GET", "/me/books", token=crafted))


def test_make_jwt_valid_and_revoke_all(
    server: FakeTextStackServer, wire: Wire, clock: FakeClock
) -> None:
    crafted = server.make_jwt({"sub": server.user_id, "exp": clock.time() + 10.5})
    assert jwt_part(crafted, 1)["exp"] == clock.time() + 10.5
    assert wire.call("GET", "/me/books", token=crafted).status == 200
    stranger = server.make_jwt({"sub": "someone-else", "exp": clock.time() + 10})
    assert_bearer_refused(wire.call("GET", "/me/books", token=stranger))
    access, refresh_token = server.issue_tokens()
    server.revoke_all()
    for bearer in (crafted, access):
        assert_bearer_refused(wire.call("GET", "/me/books", token=bearer))
    assert refresh(wire, refresh_token).status == 401
    assert wire.call("GET", "/me/books", token=server.issue_tokens()[0]).status == 200


# -- Host header and routing --------------------------------------------------------------


@pytest.mark.parametrize("host", ["textstack.app:443", "evil.example", "TEXTSTACK.APP ", ""])
def test_host_must_be_the_site_host(wire: Wire, token: str, host: str) -> None:
    answer = wire.call("GET", "/me/books", token=token, host=host)
    assert answer.status == 400
    assert answer.json()["error"] == "unknown_site"
    assert answer.json()["message"]


def test_missing_host_header(server: FakeTextStackServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.putrequest("GET", "/api/books/moby-dick", skip_host=True)
    conn.endheaders()
    answer = conn.getresponse()
    assert answer.status == 400
    assert json.loads(answer.read())["error"] == "unknown_site"
    conn.close()


def test_unknown_routes_and_bad_bodies(wire: Wire, token: str) -> None:
    for path in ("/nope", "/me/unknown/route", "/books/moby-dick/chapters/x/y"):
        answer = wire.call("GET", path, token=token)
        assert (answer.status, answer.json()["error"]) == (404, "not_found")
    assert wire.call("DELETE", "/me/books", token=token).status == 405
    assert wire.call("GET", "/../etc/passwd").status == 404
    bad = wire.call("POST", "/me/highlights", token=token, raw=b'{"editionId": ')
    assert (bad.status, bad.json()["error"]) == (400, "invalid_request")
    nested = wire.call("POST", "/me/insights", token=token, raw=b"[" * 100_000)
    assert nested.status == 400


# -- faults -------------------------------------------------------------------------------


def test_fault_status_json_and_retry_after(server: FakeTextStackServer, wire: Wire) -> None:
    flow = wire.call("POST", "/auth/device/code").json()
    server.inject(
        "POST /auth/device/token",
        status=429,
        json={"error": "rate_limited"},
        headers={"Retry-After": "7"},
    )
    limited = wire.poll(flow["device_code"])
    assert (limited.status, limited.json()) == (429, {"error": "rate_limited"})
    assert limited.headers["retry-after"] == "7"
    # the faulted poll never reached the server, so the next one is not "too fast"
    assert wire.poll(flow["device_code"]).json()["error"] == "authorization_pending"
    assert server.count("POST /auth/device/token") == 2


def test_fault_html_502_has_no_effect(server: FakeTextStackServer, wire: Wire) -> None:
    _, first = server.issue_tokens()
    server.inject("POST /api/auth/refresh-mobile", status=502, body=NGINX_502)
    answer = refresh(wire, first)
    assert answer.status == 502
    assert answer.headers["content-type"].startswith("text/html")
    assert b"nginx" in answer.body
    assert refresh(wire, first).status == 200  # the proxy answered; nothing rotated


def test_fault_times_then_normal(server: FakeTextStackServer, wire: Wire) -> None:
    server.inject("GET /books/*", status=503, json={"error": "busy"}, times=2)
    statuses = [wire.call("GET", "/books/moby-dick").status for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert server.count("GET /books/{slug}") == 3


def test_fault_star_and_non_json_200(server: FakeTextStackServer, wire: Wire) -> None:
    server.inject("*", status=200, body="<html>maintenance</html>")
    answer = wire.call("GET", "/search?q=whale")
    assert (answer.status, answer.body) == (200, b"<html>maintenance</html>")
    assert (
        wire.call("GET", "/search?q=whale").headers["content-type"].startswith("application/json")
    )


def test_fault_headers_on_a_normal_answer(server: FakeTextStackServer, wire: Wire) -> None:
    server.inject("GET /books/{slug}", headers={"Retry-After": "3"})
    answer = wire.call("GET", "/books/moby-dick")
    assert answer.status == 200
    assert answer.headers["retry-after"] == "3"
    assert answer.json()["slug"] == "moby-dick"


@pytest.mark.timeout(5)
def test_fault_delay(server: FakeTextStackServer) -> None:
    server.inject("GET /books/{slug}", delay=0.1)
    wire = Wire(server)
    started = time.monotonic()
    assert wire.call("GET", "/books/moby-dick").status == 200
    assert time.monotonic() - started >= 0.1
    wire.close()
    server.inject("GET /books/{slug}", delay=30)
    impatient = Wire(server, timeout=0.05)
    with pytest.raises(socket.timeout):
        impatient.call("GET", "/books/moby-dick")
    impatient.close()
    started = time.monotonic()
    server.stop()  # a pending delay must not hold up stop()
    assert time.monotonic() - started < 2


def test_fault_drop_without_effect(server: FakeTextStackServer, wire: Wire) -> None:
    _, first = server.issue_tokens()
    server.inject("POST /auth/refresh-mobile", drop=True, effect=False)
    with pytest.raises(http.client.IncompleteRead) as caught:
        refresh(wire, first)
    assert len(caught.value.partial) > 0
    fresh = Wire(server)
    assert refresh(fresh, first).status == 200  # never reached the server: not rotated
    fresh.close()
    assert server.count("POST /auth/refresh-mobile") == 2


def test_fault_drop_mid_body_after_the_request_took_effect(
    server: FakeTextStackServer, wire: Wire
) -> None:
    _, first = server.issue_tokens()
    server.inject("POST /auth/refresh-mobile", drop=True)
    with pytest.raises(http.client.IncompleteRead) as caught:
        refresh(wire, first)
    assert len(caught.value.partial) > 0
    fresh = Wire(server)
    assert refresh(fresh, first).status == 401  # the server rotated before the drop
    fresh.close()


def raw_exchange(server: FakeTextStackServer, path: str) -> tuple[bytes, list[bytes]]:
    """Sends one GET, returns (head, body chunks as received) until the peer closes."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    sock.sendall(
        f"GET /api{path} HTTP/1.1\r\nHost: {server.site_host}\r\nConnection: close\r\n\r\n".encode()
    )
    data, chunks = b"", []
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, rest = data.split(b"\r\n\r\n", 1)
    if rest:
        chunks.append(rest)
    while True:
        piece = sock.recv(65536)
        if not piece:
            break
        chunks.append(piece)
    sock.close()
    return head, chunks


@pytest.mark.timeout(5)
def test_fault_drip(server: FakeTextStackServer) -> None:
    server.inject("GET /books/{slug}", status=200, json={"slow": True}, drip=0.01)
    started = time.monotonic()
    head, chunks = raw_exchange(server, "/books/moby-dick")
    body = b"".join(chunks)
    assert json.loads(body) == {"slow": True}
    assert b"Content-Length: %d" % len(body) in head
    assert len(chunks) >= len(body) // 2  # bytes arrived one by one, not in one write
    assert time.monotonic() - started >= 0.01 * (len(body) - 1)


@pytest.mark.timeout(10)
def test_fault_oversize(server: FakeTextStackServer, wire: Wire) -> None:
    server.inject("GET /me/books", oversize=300_000)
    head, chunks = raw_exchange(server, "/me/books")
    body = b"".join(chunks)
    assert b"Content-Length: 300000" in head
    assert len(body) == 300_000
    assert json.loads(body)["padding"].startswith("xxx")
    # A client that gives up early does not break the server.
    server.inject("GET /me/books", oversize=50_000_000)
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    sock.sendall(f"GET /api/me/books HTTP/1.1\r\nHost: {server.site_host}\r\n\r\n".encode())
    assert b"Content-Length: 50000000" in sock.recv(65536)
    sock.close()
    assert wire.call("GET", "/books/moby-dick").status == 200


def test_inject_rejects_nonsense(server: FakeTextStackServer) -> None:
    with pytest.raises(ValueError):
        server.inject("*", drop=True, drip=0.1)
    with pytest.raises(ValueError):
        server.inject("*", json={}, body="x")
    with pytest.raises(ValueError):
        server.inject("*", times=0)
    with pytest.raises(ValueError):
        server.inject("*", delay=-1)
    with pytest.raises(ValueError):
        server.inject("*", status=500, effect=True)


# -- catalog ------------------------------------------------------------------------------


def test_catalog_book_and_chapters(wire: Wire) -> None:
    book = wire.call("GET", "/books/pride-and-prejudice").json()
    assert set(book) == {
        "id", "slug", "title", "language", "description", "authors", "genres", "chapters",
    }  # fmt: skip
    assert book["authors"] == [{"name": "Jane Austen"}]
    assert set(book["chapters"][0]) == {"id", "chapterNumber", "slug", "title", "wordCount"}
    first = wire.call("GET", "/books/pride-and-prejudice/chapters/chapter-1").json()
    assert set(first) == {"chapterNumber", "slug", "title", "html", "prev", "next"}
    assert first["prev"] is None
    assert first["next"] == {"slug": "chapter-2", "title": "Chapter 2"}
    assert first["html"].startswith("<p>It is a truth universally acknowledged")
    last = wire.call("GET", "/books/pride-and-prejudice/chapters/chapter-3").json()
    assert (last["prev"]["slug"], last["next"]) == ("chapter-2", None)
    assert wire.call("GET", "/books/no-such-book").status == 404
    assert wire.call("GET", "/books/moby-dick/chapters/no-such").status == 404


def test_search_with_highlights(wire: Wire) -> None:
    found = wire.call("GET", "/search?q=Ishmael&limit=5").json()
    assert found["total"] == 1
    item = found["items"][0]
    assert set(item) == {
        "chapterId", "chapterSlug", "chapterTitle", "chapterNumber", "edition", "highlights",
    }  # fmt: skip
    assert set(item["edition"]) == {"id", "slug", "title", "language", "authors", "coverPath"}
    assert item["edition"]["slug"] == "moby-dick"
    assert "<b>Ishmael</b>" in item["highlights"][0]
    assert wire.call("GET", "/search?q=zzzz").json() == {"total": 0, "items": []}
    assert wire.call("GET", "/search?q=the&limit=x").status == 400


def test_ask_is_deterministic(server: FakeTextStackServer, wire: Wire, token: str) -> None:
    path = f"/books/{server.sample_ids['pride-and-prejudice']}/ask"
    body = {"question": "Who waited on Mr. Bingley?", "k": 2}
    first = wire.call("POST", path, body, token=token).json()
    assert first == wire.call("POST", path, body, token=token).json()
    assert set(first) == {"answer", "citations", "lastReadOrd", "insufficient"}
    assert set(first["citations"][0]) == {"marker", "chapterOrd", "preview"}
    assert len(first["citations"]) <= 2 and first["insufficient"] is False
    assert first["lastReadOrd"] == 2
    none = wire.call("POST", path, {"question": "quantum chromodynamics?"}, token=token).json()
    assert none["insufficient"] is True and none["citations"] == []
    assert_bearer_refused(wire.call("POST", path, body))


# -- user-scoped --------------------------------------------------------------------------


def test_highlights_round_trip(server: FakeTextStackServer, wire: Wire, token: str) -> None:
    ids = server.sample_ids
    edition = ids["moby-dick"]
    assert wire.call("GET", f"/me/highlights/{edition}", token=token).json() == []
    created = wire.call(
        "POST",
        "/me/highlights",
        {
            "editionId": edition,
            "chapterId": ids["moby-dick/loomings"],
            "anchorJson": "{}",
            "color": "blue",
            "selectedText": "Call me Ishmael.",
            "noteText": None,
        },
        token=token,
    )
    assert created.status == 201
    record = created.json()
    assert set(record) == {
        "id", "chapterId", "userChapterId", "color", "selectedText", "noteText", "createdAt",
    }  # fmt: skip
    assert re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", record["id"]
    )
    assert record["createdAt"].endswith("+00:00")
    assert wire.call("GET", f"/me/highlights/{edition}", token=token).json() == [record]

    book = ids["meditations"]
    upload = wire.call(
        "POST",
        "/me/highlights",
        {
            "userBookId": book,
            "userChapterId": ids["meditations/book-two"],
            "anchorJson": '{"exact": "Begin the morning"}',
            "selectedText": "Begin the morning",
            "color": "yellow",
        },
        token=token,
    ).json()
    assert upload["chapterId"] is None and upload["userChapterId"] == ids["meditations/book-two"]
    listed = wire.call("GET", f"/me/highlights/userbook/{book}", token=token).json()
    assert [h["id"] for h in listed] == [upload["id"]]
    stranger = "00000000-0000-4000-8000-000000000000"
    assert wire.call("GET", f"/me/highlights/userbook/{stranger}", token=token).status == 404
    empty = wire.call(
        "POST",
        "/me/highlights",
        {"editionId": edition, "chapterId": ids["moby-dick/loomings"], "selectedText": " "},
        token=token,
    )
    assert empty.status == 400 and empty.json()["errors"][0]["path"] == "selectedText"


def test_vocabulary_filters(wire: Wire, token: str) -> None:
    everything = wire.call("GET", "/me/vocabulary/words", token=token).json()
    assert everything["total"] == len(everything["items"]) == 6
    assert set(everything["items"][0]) == {
        "word", "language", "translation", "definition", "stage", "bookTitle", "nextReviewAt",
    }  # fmt: skip
    new = wire.call("GET", "/me/vocabulary/words?stage=new", token=token).json()
    assert {w["stage"] for w in new["items"]} == {"new"} and new["total"] == 2
    page = wire.call("GET", "/me/vocabulary/words?limit=2&offset=1", token=token).json()
    assert page["total"] == 6 and page["items"] == everything["items"][1:3]
    found = wire.call("GET", "/me/vocabulary/words?search=purse", token=token).json()
    assert [w["word"] for w in found["items"]] == ["purse"]
    assert wire.call("GET", "/me/vocabulary/words?stage=bogus", token=token).status == 400


def test_my_books_and_chapter_uses_previous(
    server: FakeTextStackServer, wire: Wire, token: str
) -> None:
    books = wire.call("GET", "/me/books", token=token).json()
    assert len(books) == 2
    assert set(books[0]) == {
        "id", "title", "slug", "author", "status", "chapterCount", "progressPercent",
        "progressChapterSlug", "completedAt",
    }  # fmt: skip
    book_id = server.sample_ids["the-art-of-war"]
    book = wire.call("GET", f"/me/books/{book_id}", token=token).json()
    assert set(book) == {
        "id", "title", "slug", "language", "author", "description", "genre", "publishedYear",
        "totalWordCount", "status", "hasOriginalPdf", "chapters",
    }  # fmt: skip
    second = wire.call("GET", f"/me/books/{book_id}/chapters/waging-war", token=token).json()
    assert "prev" not in second
    assert second["previous"] == {
        "chapterNumber": 1,
        "slug": "laying-plans",
        "title": "Laying Plans",
    }
    assert second["next"] is None
    assert wire.call("GET", "/me/books/not-a-guid", token=token).status == 404
    assert server.count("GET /me/books/{bookId}") == 2


def test_insights_replace_for_the_same_place(
    server: FakeTextStackServer, wire: Wire, token: str
) -> None:
    book = server.sample_ids["meditations"]
    body = {"userBookId": book, "chapterSlug": "book-one", "text": "Gratitude.", "question": "?"}
    created = wire.call("POST", "/me/insights", body, token=token)
    assert created.status == 201
    replaced = wire.call("POST", "/me/insights", dict(body, text="Temper."), token=token)
    assert replaced.status == 200
    assert replaced.json()["id"] == created.json()["id"]
    listed = wire.call("GET", f"/me/insights?userBookId={book}", token=token).json()
    assert [i["text"] for i in listed] == ["Temper."]
    assert set(listed[0]) == {
        "id", "editionId", "userBookId", "chapterSlug", "chapterNumber", "chapterTitle", "text",
        "question", "source", "createdAt", "updatedAt",
    }  # fmt: skip
    whole = wire.call("POST", "/me/insights", dict(body, chapterSlug=None), token=token)
    assert whole.status == 201 and whole.json()["chapterSlug"] is None
    stranger = "00000000-0000-4000-8000-000000000000"
    assert wire.call("GET", f"/me/insights?editionId={stranger}", token=token).status == 404
    assert wire.call("GET", "/me/insights", token=token).status == 400


def test_progress_percent_needs_percent_unit(
    server: FakeTextStackServer, wire: Wire, token: str
) -> None:
    ids = server.sample_ids
    edition = ids["pride-and-prejudice"]
    chapter = ids["pride-and-prejudice/chapter-3"]
    put = wire.call(
        "PUT",
        f"/me/progress/{edition}",
        {"chapterId": chapter, "locator": "cfi-1", "percent": 80, "percentUnit": "book"},
        token=token,
    )
    assert put.status == 204
    stored = wire.call("GET", f"/me/progress/{edition}", token=token).json()
    assert set(stored) == {
        "editionId", "chapterId", "chapterSlug", "locator", "percent", "updatedAt", "completedAt",
    }  # fmt: skip
    assert (stored["percent"], stored["chapterSlug"]) == (80, "chapter-3")
    wire.call(
        "PUT",
        f"/me/progress/{edition}",
        {"chapterId": chapter, "locator": "cfi-2", "percent": 95},
        token=token,
    )
    stored = wire.call("GET", f"/me/progress/{edition}", token=token).json()
    assert (stored["locator"], stored["percent"]) == ("cfi-2", 80)  # position kept, % dropped
    assert wire.call("GET", f"/me/progress/{ids['moby-dick']}", token=token).status == 404

    book = ids["meditations"]
    assert wire.call("GET", f"/me/books/{book}/progress", token=token).status == 404
    wire.call(
        "PUT",
        f"/me/books/{book}/progress",
        {"chapterSlug": "book-two", "locator": "p:1", "percent": 100, "percentUnit": "book",
         "locatorKind": "paragraph"},
        token=token,
    )  # fmt: skip
    mine = wire.call("GET", f"/me/books/{book}/progress", token=token).json()
    assert set(mine) == {"chapterSlug", "locator", "percent", "updatedAt"}
    assert mine["percent"] == 100
    shelves = wire.call("GET", "/me/library/shelves", token=token).json()
    assert set(shelves) == {"continueReading", "recentlyAdded", "finishedThisMonth"}
    assert [i["id"] for i in shelves["finishedThisMonth"]] == [book]
    assert set(shelves["recentlyAdded"][0]) == {
        "id", "type", "title", "author", "slug", "progressPercent", "lastOpenedAt", "chapterSlug",
    }  # fmt: skip


def test_chapter_review(server: FakeTextStackServer, wire: Wire, token: str) -> None:
    edition = server.sample_ids["moby-dick"]
    query = f"/me/chapter-review?editionId={edition}&chapterSlug=loomings&part=1"
    review = wire.call("GET", query, token=token)
    assert review.status == 200 and review.json()["review"] is None
    empty = wire.call(
        "PUT",
        "/me/chapter-review",
        {"editionId": edition, "chapterSlug": "loomings", "review": ""},
        token=token,
    )
    assert empty.status == 400
    refusal = empty.json()
    assert set(refusal) == {"error", "message", "errors"}
    assert refusal["errors"] == [
        {"path": "review", "code": "required", "message": refusal["message"]}
    ]
    saved = wire.call(
        "PUT",
        "/me/chapter-review",
        {"editionId": edition, "chapterSlug": "loomings", "review": "Restless start."},
        token=token,
    )
    assert saved.status == 200
    assert wire.call("GET", query, token=token).json()["review"] == "Restless start."
    too_far = wire.call("GET", query.replace("part=1", "part=9"), token=token)
    assert too_far.status == 400 and too_far.json()["errors"][0]["path"] == "part"


def test_library_search(server: FakeTextStackServer, wire: Wire, token: str) -> None:
    hits = wire.call("GET", "/me/library/search?q=chariots", token=token).json()
    assert [h["id"] for h in hits] == [server.sample_ids["the-art-of-war"]]
    assert set(hits[0]) == {
        "id", "title", "author", "coverPath", "language", "rank", "excerpt", "chapterSlug",
    }  # fmt: skip
    assert hits[0]["chapterSlug"] == "waging-war"
    tagged = wire.call("GET", "/me/library/search?tags=philosophy", token=token).json()
    assert [h["title"] for h in tagged] == ["Meditations"]


# -- observability and lifecycle ----------------------------------------------------------


def test_counters_requests_and_repr_hide_tokens(server: FakeTextStackServer, wire: Wire) -> None:
    access, refresh_token = server.issue_tokens()
    refresh(wire, refresh_token)
    wire.call("GET", "/me/books", token=access)
    recorded = server.requests
    assert [r.route for r in recorded] == ["POST /auth/refresh-mobile", "GET /me/books"]
    assert recorded[1].headers["authorization"] == f"Bearer {access}"
    assert recorded[0].json() == {"refreshToken": refresh_token}
    for text in (repr(server), str(server), repr(recorded), repr(server.counts())):
        assert access not in text and refresh_token not in text
        assert access[:20] not in text
    assert "GET /me/books: 1" in repr(server)
    assert server.count("*") == 2
    server.reset_counters()
    assert server.count("GET /me/books") == 0 and server.requests == []


def test_stop_ends_keep_alive_connections_and_frees_the_port() -> None:
    server = FakeTextStackServer().start()
    wire = Wire(server)
    assert wire.call("GET", "/books/moby-dick").status == 200  # connection kept open
    port = server.port
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 2
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    wire.close()
    with pytest.raises(RuntimeError):
        server.start()


def _subprocess_env() -> dict[str, str]:
    root = str(Path(textstack_sdk.__file__).resolve().parent.parent)
    return dict(os.environ, PYTHONPATH=root)


def test_importing_the_sdk_does_not_load_cryptography() -> None:
    code = "import sys, textstack_sdk, textstack_sdk.testing;print('cryptography' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        env=_subprocess_env(),
        capture_output=True,
        timeout=30,
    )
    assert out.stdout.strip() == b"False", out.stderr


@pytest.mark.timeout(30)
def test_module_serves_in_the_foreground_until_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "textstack_sdk.testing", "--interval", "0.05", "--auto-approve"],
        env=_subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        api_url = proc.stdout.readline().decode().strip()
        match = re.fullmatch(r"http://127\.0\.0\.1:(\d+)/api", api_url)
        assert match, api_url
        conn = http.client.HTTPConnection("127.0.0.1", int(match.group(1)), timeout=5)
        headers = {"Host": "textstack.app", "Content-Type": "application/json"}
        conn.request("POST", "/api/auth/device/code", headers=headers)
        flow = json.loads(conn.getresponse().read())
        assert flow["interval"] == 0.05
        poll = json.dumps({"grant_type": GRANT, "device_code": flow["device_code"]})
        conn.request("POST", "/api/auth/device/token", body=poll, headers=headers)
        answer = conn.getresponse()
        assert answer.status == 200 and "access_token" in json.loads(answer.read())
        conn.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert proc.stderr is not None and proc.stderr.read() == b""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
