"""The ``textstack`` command line (also ``python -m textstack_sdk``).

Modules import only downward: ``_context`` and ``_format`` at the bottom, the sign-in
experience (``_signin``) above them, one module per command group (``_auth``,
``_read``, ``_demo``, ``_mcp``, ``_cache``), and the entry point (``_main``) on top.

``textstack token`` runs inside shell substitutions and credential helpers, so its
start-up is paid on every call. With a static token (``TEXTSTACK_MCP_TOKEN``) and no
options it needs no parser, no SDK module and no HTTP: ``main`` answers it here, with
nothing imported beyond ``os`` and ``sys``, and hands everything else to ``_main``.
``tests/test_cli_startup.py`` checks that both paths print the same and exit the same.
"""

from __future__ import annotations

import os
import sys

# Not typing.TYPE_CHECKING: the fast path below must not pay for importing typing.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Optional
del TYPE_CHECKING

__all__ = ["main"]


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs ``textstack`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    args = sys.argv[1:] if argv is None else list(argv)
    if args == ["token"]:
        token = _static_token(os.environ)
        if token:
            return _print_token(token)
    from ._main import main as run

    return run(args)


def _static_token(environ: Mapping[str, str]) -> Optional[str]:
    """``TEXTSTACK_MCP_TOKEN`` when set and non-empty (it overrides any sign-in)."""
    return environ.get("TEXTSTACK_MCP_TOKEN", "").strip() or None


def _print_token(token: str) -> int:
    try:
        sys.stdout.write(token + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        # As ``_main`` does: the reader went away (``| head``); say nothing on a dead pipe.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except OSError:
            pass
        return 1
    return 0
