"""The fake TextStack server in a process of its own, pinned to a CPU of its own."""

from __future__ import annotations

import contextlib
import os
import queue
import subprocess
import sys
import threading
from typing import Optional

__all__ = ["ServerProcess", "pin"]


def _project_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ServerProcess:
    """``python -m textstack_sdk.testing`` as a child; ``api_url`` once it listens."""

    def __init__(self, *args: str) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (_project_root(), env.get("PYTHONPATH", "")) if p
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "textstack_sdk.testing", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        lines: queue.Queue[str] = queue.Queue()
        assert self.proc.stdout is not None
        stdout = self.proc.stdout
        threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
        try:
            self.api_url = lines.get(timeout=30).strip()
        except queue.Empty:
            self.close()
            raise RuntimeError("the fake server did not start within 30 s") from None
        if not self.api_url.startswith("http://"):
            self.close()
            raise RuntimeError(f"the fake server printed {self.api_url!r}, not its URL")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def pin(server_pid: int) -> Optional[set[int]]:
    """Pins the server to the last usable CPU and this process to the others.

    Returns this process's previous affinity (to restore), or None when pinning is not
    possible (one CPU, or no ``sched_setaffinity``).
    """
    try:
        mine = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        return None
    cpus: list[int] = sorted(mine)
    if len(cpus) < 2:
        return None
    try:
        os.sched_setaffinity(server_pid, {cpus[-1]})
        os.sched_setaffinity(0, set(cpus[:-1]))
    except OSError:
        return None
    return set(mine)


def unpin(previous: Optional[set[int]]) -> None:
    if previous is not None:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, previous)
