"""A small TCP proxy that faults the byte stream below HTTP, for tests.

Each accepted connection draws a seeded plan: pass through, delay, drip bytes in tiny
pieces, cut the response after N bytes (FIN), reset it after N bytes (RST), or cut the
request before it reaches the server. Threads only; everything is bounded and stops
with ``close()``.
"""

from __future__ import annotations

import collections
import contextlib
import random
import socket
import struct
import threading
import time
from typing import Optional

__all__ = ["ChaosProxy"]

ALL_PLANS = ("pass", "delay", "drip", "cut", "reset", "cut_request")
SAFE_PLANS = ("pass", "delay", "drip", "cut_request")  # never lose a processed answer


class ChaosProxy:
    """Forwards 127.0.0.1:<port> to a target port, faulting connections. Thread-safe."""

    def __init__(self, target_port: int, seed: int, plans: tuple[str, ...] = ALL_PLANS) -> None:
        self._target = target_port
        self._rng = random.Random(seed)
        self._plans = plans
        self._lock = threading.Lock()
        self.counts: collections.Counter[str] = collections.Counter()
        self._stop = threading.Event()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.05)
        self._sockets: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, name="chaos-proxy", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    def _draw(self) -> tuple[str, float, int]:
        with self._lock:
            plan = self._rng.choice(self._plans)
            self.counts[plan] += 1
            return plan, self._rng.uniform(0.001, 0.03), self._rng.randint(0, 600)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except (socket.timeout, OSError):
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self._target), timeout=2)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            # Each request on the connection draws the plan for itself and its answer.
            state: dict[str, object] = {"plan": "pass", "delay": 0.0, "cut_at": 0, "sent": 0}
            for src, dst, direction in ((client, upstream, "up"), (upstream, client, "down")):
                threading.Thread(
                    target=self._pump, args=(src, dst, direction, state), daemon=True
                ).start()

    def _pump(
        self, src: socket.socket, dst: socket.socket, direction: str, state: dict[str, object]
    ) -> None:
        try:
            src.settimeout(5)
            while not self._stop.is_set():
                data = src.recv(65536)
                if not data:
                    break
                if direction == "up":
                    plan, delay, cut_at = self._draw()
                    state.update(plan=plan, delay=delay, cut_at=cut_at, sent=0)
                plan = str(state["plan"])
                delay = float(state["delay"])  # type: ignore[arg-type]
                cut_at = int(state["cut_at"])  # type: ignore[call-overload]
                sent = int(state["sent"])  # type: ignore[call-overload]
                if direction == "up" and plan == "cut_request":
                    dst.sendall(data[: max(1, len(data) // 2)])
                    self._abort(src, dst, reset=False)
                    return
                if direction == "down":
                    if plan == "delay" and sent == 0:
                        time.sleep(delay)
                    if plan in ("cut", "reset") and sent + len(data) > cut_at:
                        dst.sendall(data[: max(0, cut_at - sent)])
                        self._abort(src, dst, reset=plan == "reset")
                        return
                    state["sent"] = sent + len(data)
                    if plan == "drip":
                        for start in range(0, len(data), 97):
                            dst.sendall(data[start : start + 97])
                            time.sleep(0.0005)
                        continue
                dst.sendall(data)
        except OSError:
            pass
        finally:
            self._abort(src, dst, reset=False)

    @staticmethod
    def _abort(a: socket.socket, b: socket.socket, *, reset: bool) -> None:
        for sock in (a, b):
            try:
                if reset:
                    # Linger 0 makes the close an RST; SHUT_RD wakes the other pump's
                    # recv so the descriptor is really released (and the RST sent) now.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    sock.shutdown(socket.SHUT_RD)
                else:
                    sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            with contextlib.suppress(OSError):
                sock.close()

    def close(self, timeout: Optional[float] = 2.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
        self._listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()
