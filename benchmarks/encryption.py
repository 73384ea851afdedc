"""Benchmark 5: what encryption at rest costs a save, a load and the hot path.

A ``FileTokenCache`` written in plaintext and with an ``AesGcmCipher``, candidates
interleaved round by round. The folder is on tmpfs (``/dev/shm``) when there is one: a
save's fsyncs on a disk swing by milliseconds and would bury the microseconds measured
here, and what encryption adds does not depend on the disk. The figure that matters is
the added cost: the median over rounds of (encrypted - plaintext) of the same round. The
cipher's own work (seal + open of one cache record) is shown beside it.
The hot path is ``get_token()`` on a valid token with each cache behind it.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

from textstack_sdk import AesGcmCipher, Authorized, FileTokenCache, TokenManager, TokenSet
from textstack_sdk.testing import MockTransport

from ._common import Config, Row, calibrate, interleaved, ns_per_call, ratio_rows, spread
from .hot_path import _no_network, _unsigned_jwt

__all__ = ["run"]

SECTION_SAVE = "encryption at rest, save (µs/op)"
SECTION_LOAD = "encryption at rest, load (µs/op)"
SECTION_ADDED = "encryption at rest, added cost (µs/op)"
SECTION_HOT = "encryption at rest, hot path (ns/call)"
PLAIN_HOT = "get_token(), plaintext file cache"
SEALED_HOT = "get_token(), encrypted file cache"


def _tokens() -> TokenSet:
    exp = time.time() + 10 * 365 * 86400
    return TokenSet(_unsigned_jwt(exp), "r" * 64, exp)


def _per_op_us(fn: Callable[[], object], n: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(n):
        fn()
    return (time.perf_counter_ns() - start) / n / 1000


def _scratch() -> Optional[str]:
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None


def _manager(cache: FileTokenCache) -> TokenManager:
    manager = TokenManager(
        api_url="http://127.0.0.1:9/api",
        site_host="textstack.app",
        cache=cache,
        transport=MockTransport(_no_network),
        prompt=False,
        environ={},
    )
    if not isinstance(manager.get_token(), Authorized):
        raise RuntimeError("the seeded token was not accepted")
    return manager


def run(config: Config) -> list[Row]:
    """Runs the encryption benchmarks and returns their rows."""
    tokens = _tokens()
    cipher = AesGcmCipher(AesGcmCipher.generate_key())
    saves, loads = (3, 20) if config.smoke else (25, 400)
    scratch = _scratch()
    with tempfile.TemporaryDirectory(prefix="textstack-bench-", dir=scratch) as folder:
        plain = FileTokenCache(Path(folder) / "plain" / "mcp-token.json", cipher=None)
        sealed = FileTokenCache(Path(folder) / "sealed" / "mcp-token.json", cipher=cipher)
        for cache in (plain, sealed):
            if not cache.save(tokens) or cache.load() != tokens:
                raise RuntimeError(f"{cache!r} did not round-trip")
        if plain.stored_key_id() is not None or sealed.stored_key_id() != cipher.key_id:
            raise RuntimeError("the encrypted cache is not encrypted")
        record = sealed.path.read_bytes()
        store_id = str(sealed.path)
        ops: dict[str, Callable[[], float]] = {
            "save, plaintext": lambda: _per_op_us(lambda: plain.save(tokens), saves),
            "save, encrypted": lambda: _per_op_us(lambda: sealed.save(tokens), saves),
            "load, plaintext": lambda: _per_op_us(plain.load, loads),
            "load, encrypted": lambda: _per_op_us(sealed.load, loads),
            "cipher only: seal + open one record": lambda: _per_op_us(
                lambda: cipher.decrypt(
                    cipher.encrypt(record, kind="file", identity=store_id),
                    kind="file",
                    identity=store_id,
                ),
                loads,
            ),
        }
        samples = interleaved(ops, config.rounds)
        rows = ratio_rows(
            SECTION_SAVE,
            {k: v for k, v in samples.items() if k.startswith("save")},
            "save, plaintext",
            "µs",
        )
        rows += ratio_rows(
            SECTION_LOAD,
            {k: v for k, v in samples.items() if not k.startswith("save")},
            "load, plaintext",
            "µs",
        )
        for kind in ("save", "load"):
            deltas = [
                e - p for e, p in zip(samples[f"{kind}, encrypted"], samples[f"{kind}, plaintext"])
            ]
            s = spread(deltas)
            rows.append(
                Row(
                    SECTION_ADDED,
                    f"{kind}: encrypted - plaintext, same round",
                    s.median,
                    "µs",
                    [s.low, s.high],
                    note="target < 100 µs; " + (f"on {scratch}" if scratch else "on disk"),
                )
            )
        managers = {PLAIN_HOT: _manager(plain), SEALED_HOT: _manager(sealed)}
        try:
            fns = {name: m.get_token for name, m in managers.items()}
            sizes = {name: calibrate(fn, config.batch_seconds) for name, fn in fns.items()}
            hot = interleaved(
                {
                    name: (lambda fn=fn, n=sizes[name]: ns_per_call(fn, n))
                    for name, fn in fns.items()
                },
                config.rounds,
            )
        finally:
            for manager in managers.values():
                manager.close()
        rows.extend(ratio_rows(SECTION_HOT, hot, PLAIN_HOT, "ns"))
    return rows
