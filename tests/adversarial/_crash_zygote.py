"""A single-threaded helper process that forks cache writers and SIGKILLs them.

Run as ``python -m tests.adversarial._crash_zygote PATH``. For each line ``<micros>``
on stdin it forks a child that saves two known token pairs to ``FileTokenCache(PATH)``
alternately in a tight loop, sleeps ``micros`` microseconds, kills the child with
SIGKILL, reaps it and answers ``killed <signal>``. Forking from this small process (not
from pytest, which runs server threads) keeps the children cheap and fork-safe; the
cache (and its cipher, when the environment configures a key) is built once, before any
fork.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from textstack_sdk._cache import FileTokenCache
from textstack_sdk._models import TokenSet

PAIRS = (
    TokenSet("A1" + "a" * 3000 + "-access-one", "R1" + "r" * 3000 + "-refresh-one", None),
    TokenSet("A2" + "b" * 3000 + "-access-two", "R2" + "s" * 3000 + "-refresh-two", None),
)


def _writer(cache: FileTokenCache) -> None:
    index = 0
    while True:
        cache.save(PAIRS[index % 2])
        index += 1


def main() -> None:
    # Built before any fork, so a child starts saving at once: with TEXTSTACK_CACHE_KEY
    # set, building it loads ``cryptography``, which would otherwise eat the kill delay.
    cache = FileTokenCache(sys.argv[1])
    for line in sys.stdin:
        micros = int(line)
        pid = os.fork()
        if pid == 0:
            try:
                _writer(cache)
            finally:
                os._exit(0)
        time.sleep(micros / 1e6)
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        sys.stdout.write(f"killed {os.WTERMSIG(status) if os.WIFSIGNALED(status) else -1}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
