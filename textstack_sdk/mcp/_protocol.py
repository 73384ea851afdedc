"""The MCP JSON-RPC core: bytes in, messages and tool-call jobs out. No I/O, no threads.

In the h11 manner, the core owns every protocol decision and nothing else: the stdio
loop feeds it one line at a time (``receive``) and reports finished tool calls
(``finish``); each returns the actions to carry out (``Send`` a line, ``Start`` a tool
call on a worker). Everything it sends is one complete JSON-RPC message.

Eras (MCP_SERVER.md §3.1): the first request decides a connection's era, once. A request
carrying the 2026-07-28 envelope (``params._meta["io.modelcontextprotocol/
protocolVersion"]``) that is not ``initialize`` opens a modern (stateless) connection;
anything else opens a handshake one. A later request from the other era is refused:
``initialize`` on a modern connection gets -32022, an enveloped request on a handshake
connection gets -32600 (the official SDK's routing).

Cancellation: ``notifications/cancelled`` marks the call; its result is dropped when it
arrives. A call cannot be interrupted mid-request (urllib3), so the worker sees the
cancel event and the core swallows whatever it returns.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from ._args import ABSENT

__all__ = [
    "HANDSHAKE_VERSIONS",
    "LATEST_HANDSHAKE_VERSION",
    "MODERN_VERSIONS",
    "Action",
    "Send",
    "ServerCore",
    "Start",
    "encode",
]

LATEST_HANDSHAKE_VERSION = "2025-11-25"
HANDSHAKE_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")
MODERN_VERSIONS = ("2026-07-28",)

PROTOCOL_VERSION_KEY = "io.modelcontextprotocol/protocolVersion"
CLIENT_CAPABILITIES_KEY = "io.modelcontextprotocol/clientCapabilities"
SERVER_INFO_KEY = "io.modelcontextprotocol/serverInfo"

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
SERVER_BUSY = -32000  # implementation-defined range; -32020..-32099 belong to MCP
UNSUPPORTED_PROTOCOL_VERSION = -32022

# The tool list never changes while a server runs, and it is the same for every user
# (tools are listed whether or not anyone is signed in), so clients may share it.
LIST_TTL_MS = 3_600_000
LIST_CACHE_SCOPE = "public"

_LEGACY = "legacy"
_MODERN = "modern"

RequestId = Union[str, int, float]
_Key = tuple[str, Any]  # ("s", "abc") / ("n", 1): 1 and "1" are different requests


@dataclass(frozen=True)
class Send:
    """One JSON-RPC message to write, already encoded as one line ending in ``\\n``."""

    line: bytes


@dataclass(frozen=True)
class Start:
    """A tool call to run off the reading thread; report it back with ``finish(key, ...)``.

    ``cancel`` is set when the client cancels the call (or the server stops); a worker
    may pass it on to code that can stop early.
    """

    key: _Key
    name: str
    arguments: Any  # params.arguments: ABSENT when the member is missing; else any JSON
    cancel: threading.Event = field(compare=False)


Action = Union[Send, Start]


class _Reject(Exception):
    """A JSON-RPC error to answer with (internal control flow of the core)."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def encode(message: Mapping[str, Any]) -> bytes:
    """One compact JSON line. UTF-8 where it can be; ASCII escapes for lone surrogates."""
    try:
        text = json.dumps(message, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        return text.encode("utf-8") + b"\n"
    except UnicodeEncodeError:
        # A string echoed from the client may hold a lone surrogate ("\\ud800" is valid
        # JSON); escaped, it stays valid JSON and valid UTF-8.
        text = json.dumps(message, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
        return text.encode("ascii") + b"\n"


def _key(request_id: Any) -> Optional[_Key]:
    if isinstance(request_id, bool):
        return None
    if isinstance(request_id, str):
        return ("s", request_id)
    if isinstance(request_id, int):
        return ("n", request_id)
    if isinstance(request_id, float) and math.isfinite(request_id):
        return ("n", int(request_id) if request_id.is_integer() else request_id)
    return None


@dataclass
class _Call:
    request_id: RequestId
    name: str
    era: str
    cancel: threading.Event


class ServerCore:
    """The protocol state of one stdio connection. Not thread-safe: callers serialize.

    Args:
        tools: The ``tools`` array of a tools/list result, in catalog order.
        server_name: ``serverInfo.name``.
        server_version: ``serverInfo.version``.
        instructions: Sent in the ``initialize`` and ``server/discover`` results.
        max_calls: Tool calls in flight at most; more are refused at once (-32000).
    """

    def __init__(
        self,
        *,
        tools: Sequence[Mapping[str, Any]],
        server_name: str,
        server_version: str,
        instructions: Optional[str] = None,
        max_calls: int = 64,
    ) -> None:
        self._tools = [dict(tool) for tool in tools]
        self._tool_names = frozenset(str(tool.get("name")) for tool in self._tools)
        self._server_info = {"name": server_name, "version": server_version}
        self._instructions = instructions
        self._max_calls = max(1, int(max_calls))
        self._era: Optional[str] = None
        self._initialized = False
        self._calls: dict[_Key, _Call] = {}

    # -- public surface ----------------------------------------------------------------

    @property
    def era(self) -> Optional[str]:
        """``"legacy"``, ``"modern"``, or None before the first request."""
        return self._era

    @property
    def in_flight(self) -> int:
        """Tool calls started and not yet finished."""
        return len(self._calls)

    def receive(self, line: bytes) -> list[Action]:
        """Handles one line from the client (without its ``\\n``)."""
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line.strip():
            return []
        try:
            message = self._parse(line)
        except _Reject as reject:
            return [self._error(None, reject)]
        if not isinstance(message, dict):
            text = "batches are not supported" if isinstance(message, list) else "not an object"
            return [self._error(None, _Reject(INVALID_REQUEST, f"Invalid Request: {text}"))]
        return self._message(message)

    def oversized(self, limit: int) -> list[Action]:
        """Answers a line longer than ``limit`` bytes (the loop skipped it unread)."""
        reject = _Reject(INVALID_REQUEST, f"Invalid Request: message longer than {limit} bytes")
        return [self._error(None, reject)]

    def finish(self, key: _Key, outcome: Union[Mapping[str, Any], BaseException]) -> list[Action]:
        """Reports a finished tool call: its CallToolResult, or what it raised.

        Returns nothing when the call was cancelled (its result is dropped) or unknown.
        """
        call = self._calls.pop(key, None)
        if call is None or call.cancel.is_set():
            return []
        if isinstance(outcome, BaseException) or not isinstance(outcome, Mapping):
            # The catalog answers tool-level failures itself; this is a defect in it.
            result: dict[str, Any] = {
                "content": [{"type": "text", "text": f"{call.name} failed: unexpected error"}],
                "isError": True,
            }
        else:
            result = dict(outcome)
        return [self._result(call.request_id, result, call.era)]

    def cancel_all(self) -> None:
        """Marks every call in flight cancelled (shutdown): no result will be sent."""
        for call in self._calls.values():
            call.cancel.set()

    # -- parsing -----------------------------------------------------------------------

    @staticmethod
    def _parse(line: bytes) -> Any:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            raise _Reject(PARSE_ERROR, "Parse error: not UTF-8") from None
        try:
            return json.loads(text, parse_constant=_no_constants)
        except RecursionError:
            raise _Reject(PARSE_ERROR, "Parse error: nested too deeply") from None
        except ValueError:  # JSONDecodeError, NaN/Infinity, an integer too long to read
            raise _Reject(PARSE_ERROR, "Parse error: not valid JSON") from None

    # -- dispatch ----------------------------------------------------------------------

    def _message(self, message: dict[str, Any]) -> list[Action]:
        has_id = "id" in message
        key = _key(message.get("id")) if has_id else None
        request_id = message.get("id") if key is not None else None
        method = message.get("method")
        if "method" not in message and has_id and ("result" in message or "error" in message):
            return []  # a response: this server sends no requests, so there is nothing to match
        if message.get("jsonrpc") != "2.0":
            return [self._error(request_id, _Reject(INVALID_REQUEST, "Invalid Request: jsonrpc"))]
        if not isinstance(method, str):
            return [self._error(request_id, _Reject(INVALID_REQUEST, "Invalid Request: method"))]
        params = message.get("params")
        if not has_id:
            self._notification(method, params)
            return []
        if key is None:
            reject = _Reject(INVALID_REQUEST, "Invalid Request: id must be a string or a number")
            return [self._error(None, reject)]
        assert request_id is not None
        era = self._era_for(method, params)
        try:
            if params is not None and not isinstance(params, dict):
                raise _Reject(INVALID_PARAMS, "Invalid params: params must be an object")
            return self._request(key, request_id, method, params or {}, era)
        except _Reject as reject:
            return [self._error(request_id, reject)]

    def _era_for(self, method: str, params: Any) -> str:
        if self._era is None:
            enveloped = isinstance(params, dict) and _enveloped(params)
            self._era = _MODERN if enveloped and method != "initialize" else _LEGACY
        return self._era

    def _request(
        self, key: _Key, request_id: RequestId, method: str, params: dict[str, Any], era: str
    ) -> list[Action]:
        if era == _MODERN:
            if method == "initialize":
                requested = params.get("protocolVersion")
                data: dict[str, Any] = {"supported": list(MODERN_VERSIONS)}
                if isinstance(requested, str):
                    data["requested"] = requested
                raise _Reject(
                    UNSUPPORTED_PROTOCOL_VERSION,
                    "this connection serves the 2026-07-28 protocol; initialize is not accepted",
                    data,
                )
            self._check_envelope(params)
        elif method != "initialize" and _enveloped(params):
            raise _Reject(
                INVALID_REQUEST,
                "this connection serves the handshake protocol era; requests carrying the "
                "2026-07-28 envelope are not accepted on it",
            )

        if method == "initialize" and era == _LEGACY:
            return [self._result(request_id, self._initialize(params), era)]
        if method == "ping" and era == _LEGACY:
            return [self._result(request_id, {}, era)]
        if method == "server/discover" and era == _MODERN:
            return [self._result(request_id, self._discover(), era)]
        if method == "tools/list":
            self._check_initialized(era)
            return [self._result(request_id, self._list(params, era), era)]
        if method == "tools/call":
            self._check_initialized(era)
            return self._call(key, request_id, params, era)
        raise _Reject(METHOD_NOT_FOUND, "Method not found", method)

    def _notification(self, method: str, params: Any) -> None:
        # Notifications are never answered, not even with an error (JSON-RPC 2.0 §4.1).
        if method == "notifications/cancelled" and isinstance(params, dict):
            key = _key(params.get("requestId"))
            call = self._calls.get(key) if key is not None else None
            if call is not None:
                call.cancel.set()

    def _check_envelope(self, params: dict[str, Any]) -> None:
        meta = params.get("_meta")
        if not isinstance(meta, dict):
            raise _Reject(
                INVALID_PARAMS,
                f"params._meta must be an object carrying the required {PROTOCOL_VERSION_KEY!r}"
                f" and {CLIENT_CAPABILITIES_KEY!r} envelope keys",
            )
        missing = [k for k in (PROTOCOL_VERSION_KEY, CLIENT_CAPABILITIES_KEY) if k not in meta]
        if missing:
            raise _Reject(
                INVALID_PARAMS,
                f"params._meta is missing the required envelope key(s): {', '.join(missing)}",
            )
        version = meta[PROTOCOL_VERSION_KEY]
        if not isinstance(version, str):
            raise _Reject(INVALID_PARAMS, "the protocol-version envelope value must be a string")
        if version not in MODERN_VERSIONS:
            raise _Reject(
                UNSUPPORTED_PROTOCOL_VERSION,
                "Unsupported protocol version",
                {"supported": list(MODERN_VERSIONS), "requested": version},
            )

    def _check_initialized(self, era: str) -> None:
        if era == _LEGACY and not self._initialized:
            raise _Reject(INVALID_PARAMS, "Invalid params: send initialize first")

    # -- methods -----------------------------------------------------------------------

    def _initialize(self, params: dict[str, Any]) -> dict[str, Any]:
        requested = params.get("protocolVersion")
        if not isinstance(requested, str):
            raise _Reject(INVALID_PARAMS, "Invalid params: protocolVersion must be a string")
        version = requested if requested in HANDSHAKE_VERSIONS else LATEST_HANDSHAKE_VERSION
        self._initialized = True
        result: dict[str, Any] = {
            "protocolVersion": version,
            "capabilities": {"tools": {}},
            "serverInfo": dict(self._server_info),
        }
        if self._instructions:
            result["instructions"] = self._instructions
        return result

    def _discover(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "supportedVersions": list(MODERN_VERSIONS),
            "capabilities": {"tools": {}},
            "ttlMs": LIST_TTL_MS,
            "cacheScope": LIST_CACHE_SCOPE,
        }
        if self._instructions:
            result["instructions"] = self._instructions
        return result

    def _list(self, params: dict[str, Any], era: str) -> dict[str, Any]:
        if params.get("cursor") is not None:
            # Every tool comes on the first page, so no cursor was ever handed out.
            raise _Reject(INVALID_PARAMS, "Invalid params: unknown cursor")
        result: dict[str, Any] = {"tools": self._tools}
        if era == _MODERN:
            result["ttlMs"] = LIST_TTL_MS
            result["cacheScope"] = LIST_CACHE_SCOPE
        return result

    def _call(
        self, key: _Key, request_id: RequestId, params: dict[str, Any], era: str
    ) -> list[Action]:
        name = params.get("name")
        if not isinstance(name, str):
            raise _Reject(INVALID_PARAMS, "Invalid params: name must be a string")
        # Any JSON value goes to the catalog, which answers a non-object (``null`` too) with
        # the .NET tool's "Arguments must be an object." result; a missing member is ABSENT,
        # which the catalog reads as no arguments (clients omit it for argument-less tools).
        arguments = params.get("arguments", ABSENT)
        if key in self._calls:
            raise _Reject(INVALID_REQUEST, "Invalid Request: this id is already in flight")
        if name not in self._tool_names:
            # The .NET tool's answer, kept for fidelity: a result the model can read.
            text = f"Unknown tool '{name}'."
            result = {"content": [{"type": "text", "text": text}], "isError": True}
            return [self._result(request_id, result, era)]
        if len(self._calls) >= self._max_calls:
            raise _Reject(
                SERVER_BUSY, f"Server busy: {self._max_calls} tool calls in flight; retry later"
            )
        cancel = threading.Event()
        self._calls[key] = _Call(request_id, name, era, cancel)
        return [Start(key, name, arguments, cancel)]

    # -- output ------------------------------------------------------------------------

    def _result(self, request_id: RequestId, result: dict[str, Any], era: str) -> Send:
        if era == _MODERN:
            result = dict(result)
            result.setdefault("resultType", "complete")
            meta = result.get("_meta")
            stamp = {SERVER_INFO_KEY: dict(self._server_info)}
            result["_meta"] = {**meta, **stamp} if isinstance(meta, dict) else stamp
        return Send(encode({"jsonrpc": "2.0", "id": request_id, "result": result}))

    @staticmethod
    def _error(request_id: Optional[RequestId], reject: _Reject) -> Send:
        error: dict[str, Any] = {"code": reject.code, "message": reject.message}
        if reject.data is not None:
            error["data"] = reject.data
        return Send(encode({"jsonrpc": "2.0", "id": request_id, "error": error}))


def _enveloped(params: Any) -> bool:
    meta = params.get("_meta") if isinstance(params, dict) else None
    return isinstance(meta, dict) and PROTOCOL_VERSION_KEY in meta
