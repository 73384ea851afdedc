"""Fault catalogues for FakeTextStackServer.inject and helpers that drive a FakeClock.

Each fault is a small record: what to pass to ``inject``, whether the request fails
(so the caller can count attempts), and whether it is safe once the person approved
(a fault that lets the server process a grant and then loses the answer burns the
single-use device code: no client can recover from that, so the login mix leaves it
out after approval and a separate test checks the clean failure).
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from textstack_sdk.testing import FakeClock, FakeTextStackServer

__all__ = ["CODE", "POLL", "REFRESH", "Fault", "code_faults", "poll_faults", "refresh_faults"]

CODE = "POST /auth/device/code"
POLL = "POST /auth/device/token"
REFRESH = "POST /auth/refresh-mobile"

HTML_502 = (
    "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway"
    "</h1></center><hr><center>nginx</center></body></html>"
)
BIG = 17 * 1024 * 1024  # past the transport's 16 MiB body cap


@dataclass(frozen=True)
class Fault:
    """One injectable fault: a name for the report and the keyword arguments of inject."""

    name: str
    options: dict[str, Any] = field(hash=False)
    fails: bool = True
    after_grant: bool = True
    slow_downs: int = 0

    def inject(self, server: FakeTextStackServer, route: str, times: int = 1) -> None:
        server.inject(route, times=times, **self.options)


def _retry_after_forms(rng: random.Random, now: float) -> list[Fault]:
    seconds = rng.randint(1, 60)
    date = email.utils.formatdate(now + rng.randint(1, 60), usegmt=True)
    malformed = rng.choice(["soon", "-3", "1e2", "Mon, 99 Foo 2020", "", "12abc", "Infinity"])
    return [
        Fault("429 Retry-After seconds", {"status": 429, "headers": {"Retry-After": str(seconds)}}),
        Fault("429 Retry-After HTTP-date", {"status": 429, "headers": {"Retry-After": date}}),
        Fault("429 Retry-After malformed", {"status": 429, "headers": {"Retry-After": malformed}}),
        Fault("503 Retry-After seconds", {"status": 503, "headers": {"Retry-After": str(seconds)}}),
    ]


def poll_faults(rng: random.Random, now: float) -> list[Fault]:
    """Faults for ``POST /auth/device/token``."""
    return [
        Fault("HTML 502", {"status": 502, "body": HTML_502, "content_type": "text/html"}),
        Fault("503", {"status": 503, "json": {"error": "unavailable"}}),
        Fault("500 HTML", {"status": 500, "body": "<h1>oops</h1>"}),
        Fault("400 without error code", {"status": 400, "json": {"message": "hm"}}),
        Fault("400 non-JSON", {"status": 400, "body": "Bad Request"}),
        *_retry_after_forms(rng, now),
        Fault("slow_down", {"status": 400, "json": {"error": "slow_down"}}, slow_downs=1),
        Fault("dropped before the server", {"drop": True, "effect": False}),
        Fault("dropped after the server", {"drop": True}, after_grant=False),
        Fault("short delay", {"delay": rng.uniform(0.002, 0.02)}, fails=False),
        Fault("drip", {"drip": 0.0005}, fails=False, after_grant=False),
        Fault("drip past the deadline", {"drip": 0.05}, after_grant=False),
        Fault("oversize 17 MiB body", {"oversize": BIG}, after_grant=False),
        Fault("oversize 100 KiB JSON", {"oversize": 100_000}, after_grant=False),
    ]


def code_faults(rng: random.Random, now: float) -> list[Fault]:
    """Faults for ``POST /auth/device/code``, including unusable 200 answers."""
    good = {
        "device_code": "x" * 40,
        "user_code": "ABCD-EFGH",
        "verification_uri": "https://textstack.app/device",
        "expires_in": 600,
        "interval": 5,
    }
    bad_expiry: Any = rng.choice(["x", -1, 0, None, "NaN", [], True, "1e999"])
    return [
        Fault("HTML 502", {"status": 502, "body": HTML_502, "content_type": "text/html"}),
        Fault("503", {"status": 503}),
        *_retry_after_forms(rng, now),
        Fault("dropped", {"drop": True, "effect": rng.random() < 0.5}),
        Fault("oversize 17 MiB body", {"oversize": BIG}),
        Fault(
            "HTML 200", {"status": 200, "body": "<html>login</html>", "content_type": "text/html"}
        ),
        Fault("200 not an object", {"status": 200, "json": ["device_code"]}),
        Fault(
            "200 invalid expires_in", {"status": 200, "json": {**good, "expires_in": bad_expiry}}
        ),
        Fault("200 missing device_code", {"status": 200, "json": {**good, "device_code": ""}}),
        Fault(
            "200 bad verification_uri", {"status": 200, "json": {**good, "verification_uri": "x"}}
        ),
        Fault("short delay", {"delay": rng.uniform(0.002, 0.02)}, fails=False),
    ]


def refresh_faults(rng: random.Random, now: float) -> list[Fault]:
    """Refresh faults after which the refresh token we hold is still the live one."""
    return [
        Fault("HTML 502", {"status": 502, "body": HTML_502, "content_type": "text/html"}),
        Fault("503", {"status": 503}),
        Fault("500 JSON", {"status": 500, "json": {"error": "server_error"}}),
        *_retry_after_forms(rng, now),
        Fault("200 HTML", {"status": 200, "body": "<html>hi</html>", "content_type": "text/html"}),
        Fault("200 without accessToken", {"status": 200, "json": {"refreshToken": "zz"}}),
        Fault("dropped before the server", {"drop": True, "effect": False}),
        Fault("drip past the deadline", {"status": 503, "body": "x" * 100, "drip": 0.05}),
        Fault("oversize 17 MiB body", {"status": 200, "body": "{", "oversize": BIG}),
        Fault("short delay", {"delay": rng.uniform(0.002, 0.02)}, fails=False),
    ]


def poller_alive() -> bool:
    return any(t.name == "textstack-device-poll" and t.is_alive() for t in threading.enumerate())


def step_clock(
    clock: FakeClock,
    *,
    done: Callable[[], bool],
    between: Callable[[], None],
    step: float = 1.0,
    max_virtual: float = 4000.0,
    real_budget: float = 30.0,
) -> None:
    """Advances virtual time by ``step`` while a thread waits on the clock.

    ``between`` runs whenever the waiting thread is blocked (nothing in flight), so it
    may inject faults or approve without racing a request.
    """
    start = clock.monotonic()
    real_end = time.monotonic() + real_budget
    while not done():
        assert clock.monotonic() - start <= max_virtual, "virtual time ran out"
        assert time.monotonic() < real_end, "the test ran out of real time"
        try:
            clock.wait_for_waiters(1, timeout=0.2)
        except AssertionError:
            continue
        between()
        clock.advance(step)
