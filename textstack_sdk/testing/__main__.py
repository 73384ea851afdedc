"""``python -m textstack_sdk.testing``: run a FakeTextStackServer in the foreground.

Prints the API URL (one line, stdout) once the server listens, then serves until
SIGINT or SIGTERM. Benchmarks start it in a process of its own.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType
from typing import Optional, Sequence

from ._server import FakeTextStackServer


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the server until a signal; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m textstack_sdk.testing", description="A local fake TextStack server."
    )
    parser.add_argument("--port", type=int, default=0, help="TCP port (0: pick a free one)")
    parser.add_argument("--interval", type=float, default=5.0, help="device poll interval, s")
    parser.add_argument(
        "--token-lifetime", type=float, default=900.0, help="access token lifetime, s"
    )
    parser.add_argument("--site-host", default="textstack.app", help="required Host header")
    parser.add_argument(
        "--auto-approve", action="store_true", help="approve every device code at once"
    )
    args = parser.parse_args(argv)
    stop = threading.Event()

    def on_signal(signum: int, frame: Optional[FrameType]) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    server = FakeTextStackServer(
        port=args.port,
        site_host=args.site_host,
        interval=args.interval,
        access_token_lifetime=args.token_lifetime,
        auto_approve=args.auto_approve,
        record_limit=0,  # a long benchmark run must not grow memory per request
    )
    with server:
        sys.stdout.write(server.api_url + "\n")
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
