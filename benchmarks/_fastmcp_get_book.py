"""The yardstick: the official Python server (FastMCP, ``MCPServer`` in mcp 2.x) with one
tool doing the same SDK call as ``textstack mcp``'s ``get_book``, rendered the same way."""

from __future__ import annotations

import json
from dataclasses import asdict

from mcp.server.mcpserver import MCPServer

from textstack_sdk import TextStackApiClient

client = TextStackApiClient()
app = MCPServer("fastmcp-yardstick")


@app.tool()
def get_book(slug: str) -> str:
    book = client.get_book(slug)
    return json.dumps(asdict(book) if book is not None else None, default=str)


if __name__ == "__main__":
    app.run()
