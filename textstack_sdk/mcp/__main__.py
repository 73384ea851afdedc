"""``python -m textstack_sdk.mcp``: the MCP stdio server (same as ``textstack mcp``)."""

from __future__ import annotations

import sys

from ._server import main

if __name__ == "__main__":
    sys.exit(main())
