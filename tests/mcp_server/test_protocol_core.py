"""The pure protocol core, with no process and no I/O: tables of cases and properties.

Properties (hypothesis): whatever bytes or JSON arrive, no exception escapes, every
output is one line of JSON-RPC, and every request gets exactly one answer, or none when
it was cancelled.
"""

from __future__ import annotations

import json
from typing import Any, Optional

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from textstack_sdk.mcp._args import ABSENT
from textstack_sdk.mcp._protocol import Send, ServerCore, Start

from ._fake_catalog import TOOLS

META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
}


CALL = {"name": "echo", "arguments": {}}


def _core() -> ServerCore:
    return ServerCore(tools=TOOLS, server_name="textstack", server_version="1", max_calls=4)


def _line(message: Any) -> bytes:
    return json.dumps(message).encode()


def _sent(actions: list[Any]) -> list[dict[str, Any]]:
    out = []
    for action in actions:
        if isinstance(action, Send):
            assert action.line.endswith(b"\n") and action.line.count(b"\n") == 1
            out.append(json.loads(action.line))
    return out


def test_initialize_negotiates_the_handshake_version() -> None:
    for asked, answered in [
        ("2025-11-25", "2025-11-25"),
        ("2025-06-18", "2025-06-18"),
        ("2025-03-26", "2025-03-26"),
        ("2024-11-05", "2024-11-05"),
        ("2024-10-07", "2025-11-25"),
        ("2026-07-28", "2025-11-25"),  # initialize does not exist at 2026 versions
    ]:
        core = _core()
        message = {"jsonrpc": "2.0", "id": 0, "method": "initialize"}
        message["params"] = {"protocolVersion": asked, "capabilities": {}}
        (reply,) = _sent(core.receive(_line(message)))
        assert reply["id"] == 0
        assert reply["result"]["protocolVersion"] == answered
        assert reply["result"]["serverInfo"] == {"name": "textstack", "version": "1"}
        assert core.era == "legacy"


def test_tools_before_initialize_are_refused_but_ping_is_answered() -> None:
    core = _core()
    (reply,) = _sent(core.receive(_line({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})))
    assert reply["error"]["code"] == -32602
    (reply,) = _sent(core.receive(_line({"jsonrpc": "2.0", "id": 2, "method": "ping"})))
    assert reply["result"] == {}


def test_modern_discover_and_envelope_rules() -> None:
    core = _core()
    request = {"jsonrpc": "2.0", "id": "d", "method": "server/discover", "params": {"_meta": META}}
    (reply,) = _sent(core.receive(_line(request)))
    result = reply["result"]
    assert result["resultType"] == "complete"
    assert result["supportedVersions"] == ["2026-07-28"]
    assert result["capabilities"] == {"tools": {}}
    assert isinstance(result["ttlMs"], int) and result["cacheScope"] in ("public", "private")
    assert result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "textstack"
    assert core.era == "modern"
    bad_version = {**META, "io.modelcontextprotocol/protocolVersion": "2099-01-01"}
    cases: list[tuple[Optional[dict[str, Any]], str, int]] = [
        (None, "tools/list", -32602),
        ({"_meta": {k: v for k, v in META.items() if "Version" in k}}, "tools/list", -32602),
        ({"_meta": bad_version}, "tools/list", -32022),
        ({"_meta": META}, "ping", -32601),
        ({"_meta": META}, "initialize", -32022),
    ]
    for i, (params, method, code) in enumerate(cases):
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": i, "method": method}
        if params is not None:
            message["params"] = params
        (reply,) = _sent(core.receive(_line(message)))
        assert reply["id"] == i and reply["error"]["code"] == code, (method, reply)


def test_a_cancelled_call_is_never_answered() -> None:
    core = _core()
    call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call"}
    call["params"] = {"name": "echo", "arguments": {}, "_meta": META}
    (start,) = core.receive(_line(call))
    assert isinstance(start, Start) and start.arguments == {}
    cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled"}
    cancel["params"] = {"requestId": 7}
    assert core.receive(_line(cancel)) == []
    assert start.cancel.is_set()
    assert core.finish(start.key, {"content": [], "isError": False}) == []
    assert core.in_flight == 0


def test_a_catalog_exception_becomes_an_unexpected_error_result() -> None:
    core = _core()
    core.receive(
        _line(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {"protocolVersion": "2025-11-25"},
            }
        )
    )
    call = {"jsonrpc": "2.0", "id": "x", "method": "tools/call", "params": {"name": "echo"}}
    (start,) = core.receive(_line(call))
    assert isinstance(start, Start) and start.arguments is ABSENT
    (reply,) = _sent(core.finish(start.key, RuntimeError("secret detail")))
    assert reply["result"] == {
        "content": [{"type": "text", "text": "echo failed: unexpected error"}],
        "isError": True,
    }


def test_lone_surrogates_are_escaped_not_fatal() -> None:
    core = _core()
    (reply,) = _sent(core.receive(b'{"jsonrpc":"2.0","id":"\\ud800","method":"ping"}'))
    assert reply["id"] == "\ud800"


# -- properties ------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
methods = st.sampled_from(
    ["initialize", "ping", "tools/list", "tools/call", "server/discover", "x", ""]
)
params = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {},
        optional={
            "name": st.sampled_from(["echo", "wait", "nope"]) | json_values,
            "arguments": st.dictionaries(st.text(), json_values, max_size=3) | json_values,
            "protocolVersion": st.sampled_from(["2025-11-25", "2024-11-05"]) | json_values,
            "_meta": st.just(META) | json_values,
            "cursor": json_values,
        },
    ),
)
request = st.fixed_dictionaries(
    {"jsonrpc": st.just("2.0"), "method": methods}, optional={"params": params}
)
notification = st.fixed_dictionaries(
    {"jsonrpc": st.just("2.0"), "method": st.just("notifications/cancelled")},
    optional={
        "params": st.fixed_dictionaries(
            {"requestId": st.integers(0, 30) | st.integers(0, 30).map(str) | st.text()}
        )
    },
)
steps = st.lists(
    st.one_of(
        request.map(lambda r: ("request", r)),
        st.just(("request", {"jsonrpc": "2.0", "method": "tools/call", "params": CALL})),
        notification.map(lambda n: ("raw", _line(n))),
        json_values.map(lambda v: ("raw", _line(v))),
        st.binary(max_size=60).map(lambda b: ("raw", b.replace(b"\n", b""))),
        st.just(("finish", None)),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=steps, string_ids=st.booleans(), initialized=st.booleans())
@example(
    steps=[
        ("request", {"jsonrpc": "2.0", "method": "tools/call", "params": CALL}),
        (
            "raw",
            _line(
                {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 0}}
            ),
        ),
        ("finish", None),
    ],
    string_ids=False,
    initialized=True,
)
def test_every_request_gets_exactly_one_answer_or_none_when_cancelled(
    steps: list[tuple[str, Any]], string_ids: bool, initialized: bool
) -> None:
    core = _core()
    if initialized:
        hello = {"protocolVersion": "2025-11-25", "capabilities": {}}
        core.receive(_line({"jsonrpc": "2.0", "id": -1, "method": "initialize", "params": hello}))
    expected: set[Any] = set()
    answered: list[Any] = []
    starts: list[Start] = []
    every_start: list[Start] = []
    dropped: set[Any] = set()
    for i, (kind, payload) in enumerate(steps):
        if kind == "request":
            request_id: Any = str(i) if string_ids else i
            actions = core.receive(_line({**payload, "id": request_id}))
            expected.add(request_id)
        elif kind == "raw":
            actions = core.receive(payload)
        else:
            done = {"content": [], "isError": False}
            actions = []
            if starts:
                start = starts.pop(0)
                if start.cancel.is_set():
                    dropped.add(start.key[1])
                actions = core.finish(start.key, done)
        starts.extend(a for a in actions if isinstance(a, Start))
        every_start.extend(a for a in actions if isinstance(a, Start))
        answered.extend(m["id"] for m in _sent(actions))
    for start in starts:
        if start.cancel.is_set():
            dropped.add(start.key[1])
        answered.extend(m["id"] for m in _sent(core.finish(start.key, {"content": []})))
    cancelled = {s.key[1] for s in every_start if s.cancel.is_set()}
    real = [a for a in answered if a is not None]
    assert len(real) == len(set(real))  # never two answers to one request
    assert set(real) | cancelled >= expected
    assert set(real) <= expected
    assert not dropped & set(real)  # a call cancelled before it finished is never answered


def test_a_missing_arguments_member_is_absent_and_null_is_passed_on() -> None:
    core = _core()
    starts = []
    for request_id, params in [(1, {"name": "echo"}), (2, {"name": "echo", "arguments": None})]:
        message = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}
        message["params"]["_meta"] = META
        starts += [a for a in core.receive(_line(message)) if isinstance(a, Start)]
    assert [s.arguments for s in starts] == [ABSENT, None]
