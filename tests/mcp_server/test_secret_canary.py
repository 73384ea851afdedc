"""No token or device code in anything ``textstack mcp`` writes (stdout or stderr).

A whole session under ``--debug``: a device sign-in approved, user calls, then the tokens
revoked (401s), server errors and an unreachable upstream. Every token and device code
the local server issued is then searched for in both streams (and a 12-character slice
of each, so a truncated secret is caught too).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from textstack_sdk.testing import FakeTextStackServer

from ._harness import RawServer, server_env


@pytest.fixture
def api() -> Iterator[FakeTextStackServer]:
    with FakeTextStackServer(interval=0.02) as srv:
        yield srv


def _secrets(api: FakeTextStackServer) -> set[str]:
    found: set[str] = set()
    for request in api.requests:
        auth = request.headers.get("authorization", "")
        if auth.startswith("Bearer "):
            found.add(auth[len("Bearer ") :])
        if request.body:
            try:
                body = json.loads(request.body)
            except ValueError:
                continue
            if isinstance(body, dict):
                for key in ("device_code", "refresh_token", "deviceCode", "refreshToken"):
                    if isinstance(body.get(key), str):
                        found.add(body[key])
    return {secret for secret in found if len(secret) >= 12}


def test_no_secret_in_any_output(api: FakeTextStackServer, tmp_path: Path) -> None:
    env = server_env(api.api_url, api.site_host, tmp_path / "c.json")
    raw = RawServer(env, ["-m", "textstack_sdk", "mcp", "--debug"])
    raw.initialize()
    call = {"name": "get_my_reading", "arguments": {}}
    raw.request("first", "tools/call", call)
    assert raw.read()["result"]["isError"] is True
    api.approve(api.wait_for_user_code())
    for attempt in range(500):
        raw.request(f"try-{attempt}", "tools/call", call)
        if not raw.read()["result"]["isError"]:
            break
    else:
        pytest.fail("the sign-in never completed")
    api.inject("GET /me/*", status=500, times=10)
    raw.request("e500", "tools/call", call)
    assert raw.read()["result"]["isError"] is True
    api.clear_faults()
    api.revoke_all()
    raw.request("e401", "tools/call", call)
    assert raw.read()["result"]["isError"] is True
    assert raw.close() == 0
    secrets = _secrets(api)
    assert len(secrets) >= 3, secrets  # device code, access and refresh tokens
    outputs = b"".join(raw.rest()).decode() + raw.stderr.decode()
    for secret in secrets:
        for piece in (secret, secret[:12], secret[-12:]):
            assert piece not in outputs
