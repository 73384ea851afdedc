"""``textstack mcp``: the SDK as an MCP stdio server (pure core, one stdio loop, catalog).

Imports only downward from the SDK; nothing in the SDK imports this package.
"""

from __future__ import annotations

from ._server import serve_stdio

__all__ = ["serve_stdio"]
