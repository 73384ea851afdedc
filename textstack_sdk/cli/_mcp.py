"""``textstack mcp``: serve TextStack's tools to an AI assistant (an MCP host) over stdio.

The server lives in ``textstack_sdk.mcp``, which knows nothing of the command line; this
module only turns the global options into the environment the server reads (an option
wins over the environment, as for every command) and hands over.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from ._context import ENV_MIN_POLL, Context

__all__ = ["register"]


def _environment(ctx: Context) -> dict[str, str]:
    env = dict(ctx.environ)
    args = ctx.args
    options = {
        "TEXTSTACK_API_URL": getattr(args, "api_url", None),
        "TEXTSTACK_SITE_HOST": getattr(args, "site_host", None),
        "TEXTSTACK_MCP_TIMEOUT_SECONDS": getattr(args, "timeout", None),
        ENV_MIN_POLL: getattr(args, "min_poll_interval", None),
    }
    cache = getattr(args, "cache", None)
    if cache:
        # The cache variable takes absolute paths only; an option is relative to here.
        options["TEXTSTACK_MCP_TOKEN_CACHE"] = os.path.abspath(os.path.expanduser(cache))
    env.update({name: str(value) for name, value in options.items() if value is not None})
    return env


def cmd_mcp(ctx: Context) -> int:
    from ..mcp import serve_stdio

    return serve_stdio(_environment(ctx))


def register(add: Callable[..., Any]) -> None:
    """Adds ``mcp``."""
    add(
        "mcp",
        cmd_mcp,
        "serve TextStack's tools to an AI assistant over MCP (stdio); MCP hosts start it",
        examples=[
            ("what an MCP host runs (stdout is the protocol stream)", "textstack mcp"),
            (
                "list the tools by hand",
                "npx @modelcontextprotocol/inspector --cli textstack mcp --method tools/list",
            ),
        ],
    )
