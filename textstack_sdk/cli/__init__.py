"""The ``textstack`` command line (also ``python -m textstack_sdk``).

Modules import only downward: ``_context`` and ``_format`` at the bottom, the sign-in
experience (``_signin``) above them, one module per command group (``_auth``,
``_read``, ``_demo``, ``_mcp``, ``_cache``), and the entry point (``_main``) on top.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

__all__ = ["main"]


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs ``textstack`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    from ._main import main as run

    return run(argv)
