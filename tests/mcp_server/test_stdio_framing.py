"""The stdio loop in process over OS pipes: framing of arbitrary bytes, and the bound."""

from __future__ import annotations

import json
import os
import sys
import threading
from typing import Any, Callable, Optional

from hypothesis import given, settings
from hypothesis import strategies as st

from textstack_sdk.mcp._protocol import ServerCore
from textstack_sdk.mcp._stdio import StdioServer, flush_or_drop

from ._fake_catalog import TOOLS, FakeCatalog

LIMIT = 1024


class _Recorder(ServerCore):
    """The real core, recording the lines the loop hands it."""

    def __init__(self) -> None:
        super().__init__(tools=TOOLS, server_name="t", server_version="1")
        self.seen: list[Optional[bytes]] = []

    def receive(self, line: bytes) -> Any:
        self.seen.append(line)
        return super().receive(line)

    def oversized(self, limit: int) -> Any:
        self.seen.append(None)
        return super().oversized(limit)


def _serve(data: bytes, core: ServerCore, after: Callable[[], None] = lambda: None) -> bytes:
    """Serves ``data`` over OS pipes; ``after`` runs as soon as ``serve`` returns."""
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    out: list[bytes] = []

    def drain() -> None:
        while chunk := os.read(out_r, 65536):
            out.append(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    server = StdioServer(
        core, FakeCatalog(), read_fd=in_r, write_fd=out_w, max_line=LIMIT, drain_timeout=5
    )
    writer = threading.Thread(target=lambda: (os.write(in_w, data), os.close(in_w)))
    writer.start()
    try:
        assert server.serve() == 0
        after()
    finally:
        writer.join()
        os.close(in_r)
        os.close(out_w)
        reader.join()
        os.close(out_r)
    return b"".join(out)


def _expected(data: bytes) -> list[Optional[bytes]]:
    parts = data.split(b"\n")
    if parts and parts[-1] == b"":
        parts.pop()
    return [None if len(p) > LIMIT else p for p in parts]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=40),
            st.just(b"\n"),
            st.just(b"x" * 1500),
            st.just(b'{"jsonrpc":"2.0","id":1,"method":"ping"}\n'),
        ),
        max_size=25,
    )
)
def test_lines_are_split_on_newline_only_and_long_ones_refused(pieces: list[bytes]) -> None:
    data = b"".join(pieces)
    core = _Recorder()
    output = _serve(data, core)
    assert core.seen == _expected(data)
    for line in output.splitlines():
        message = json.loads(line)  # every output line is one JSON-RPC message
        assert message["jsonrpc"] == "2.0"


def test_separators_other_than_newline_stay_inside_a_line() -> None:
    core = _Recorder()
    line = '{"jsonrpc":"2.0","id":"a\u2028b\u0085c","method":"ping"}'.encode()
    output = _serve(line + b"\r\n", core)
    assert json.loads(output) == {"jsonrpc": "2.0", "id": "a\u2028b\u0085c", "result": {}}


def test_no_worker_thread_outlives_serve() -> None:
    hello = {"jsonrpc": "2.0", "id": 0, "method": "initialize"}
    hello["params"] = {"protocolVersion": "2025-11-25"}
    calls = [
        {"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": "echo"}}
        for i in range(1, 9)
    ]
    data = b"".join(json.dumps(m).encode() + b"\n" for m in [hello, *calls])
    left: list[str] = []

    def workers_left() -> None:
        left.extend(t.name for t in threading.enumerate() if t.name.startswith("textstack-mcp-"))

    previous = sys.getswitchinterval()
    sys.setswitchinterval(1.0)  # the workers get no turn unless serve waits for them
    try:
        output = _serve(
            data, ServerCore(tools=TOOLS, server_name="t", server_version="1"), workers_left
        )
    finally:
        sys.setswitchinterval(previous)
    assert left == []
    assert len(output.splitlines()) == 9


class _RefusingStream:
    """Stands in for a replaced ``sys.stderr`` whose writes fail."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def flush(self) -> None:
        raise BrokenPipeError

    def fileno(self) -> int:
        return self.fd


def test_flush_or_drop_redirects_only_the_descriptor_the_stream_is_on() -> None:
    read_end, write_end = os.pipe()
    spare = os.dup(write_end)
    try:
        flush_or_drop(_RefusingStream(spare + 100), spare)  # type: ignore[arg-type]
        assert os.path.sameopenfile(spare, write_end)  # a stream on another fd: untouched
        flush_or_drop(_RefusingStream(spare), spare)  # type: ignore[arg-type]
        assert not os.path.sameopenfile(spare, write_end)
        assert os.path.samestat(os.fstat(spare), os.stat(os.devnull))
    finally:
        for fd in (read_end, write_end, spare):
            os.close(fd)
