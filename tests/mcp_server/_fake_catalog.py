"""A two-plus-one tool stand-in for the real catalog, for tests of the core and the loop.

``echo`` answers its arguments; ``wait`` blocks until cancelled (or 20 s); ``my_books``
makes one user-scoped SDK call, so sign-in is exercised through the real client.
Run as a script, it serves MCP on stdio with this catalog
(``python -m tests.mcp_server._fake_catalog``).
"""

from __future__ import annotations

import json
import os
import sys
import threading
from typing import Any

from textstack_sdk import AuthorizationRequired

TOOLS: list[dict[str, Any]] = [
    {
        "name": "echo",
        "title": "Echo",
        "description": "Answers its arguments.",
        "inputSchema": {"type": "object", "additionalProperties": True},
        "annotations": {"title": "Echo", "readOnlyHint": True},
    },
    {
        "name": "wait",
        "title": "Wait",
        "description": "Waits until cancelled.",
        "inputSchema": {"type": "object", "additionalProperties": False},
    },
    {
        "name": "my_books",
        "title": "My books",
        "description": "Counts the user's uploaded books.",
        "inputSchema": {"type": "object", "additionalProperties": False},
    },
]


def _text(text: str, *, error: bool = False) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": text}], "isError": error}


class FakeCatalog:
    """Thread-safe (stateless apart from the client)."""

    def __init__(self, client: Any = None) -> None:
        self.client = client
        self.started = threading.Event()

    def list_tools(self) -> list[dict[str, Any]]:
        return [dict(tool) for tool in TOOLS]

    def call(self, name: str, arguments: Any, cancel: threading.Event) -> dict[str, Any]:
        if not isinstance(arguments, (dict, type(None))):
            return _text("Arguments must be an object.", error=True)
        if name == "echo":
            if arguments and arguments.get("delay"):
                cancel.wait(float(arguments["delay"]))  # a slow upstream, cut short by cancel
            if arguments and arguments.get("print"):
                print("stray print from a tool")  # the stdout guard must divert this
            return _text(json.dumps(arguments, separators=(",", ":")))
        if name == "wait":
            self.started.set()
            cancelled = cancel.wait(20.0)
            return _text("cancelled" if cancelled else "waited")
        if name == "my_books":
            try:
                books = self.client.list_my_books()
            except AuthorizationRequired as exc:
                return _text(str(exc), error=True)
            return _text(json.dumps({"count": len(books)}))
        raise KeyError(name)


if __name__ == "__main__":
    from textstack_sdk.mcp._server import serve_stdio

    drain = float(os.environ.get("FAKE_MCP_DRAIN_SECONDS", "5"))
    sys.exit(serve_stdio(catalog_factory=FakeCatalog, drain_timeout=drain))
