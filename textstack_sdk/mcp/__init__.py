"""``textstack mcp``: the SDK as an MCP stdio server (a drop-in for TextStack's .NET tool)."""
