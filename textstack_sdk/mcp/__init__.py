"""``textstack mcp``: the SDK as an MCP stdio server (a drop-in for TextStack's .NET tool).

A pure JSON-RPC core (``_protocol``), one stdio loop around it (``_stdio``), the tool
catalog (``_catalog``) as data plus small handlers on the client, and the wiring
(``_server``). Imports only downward from the SDK; nothing in the SDK imports this package.
"""

from __future__ import annotations

from ._server import serve_stdio

__all__ = ["serve_stdio"]
