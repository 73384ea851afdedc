"""The CLI's logging on stderr: one line per shown record, or everything with ``--debug``.

Imported only when a command runs (``--help`` never pays for ``logging``).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Any

from .._text import for_terminal

__all__ = ["sdk_logging"]


class _OneLine(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"textstack: {record.levelname.lower()}: {for_terminal(record.getMessage())}"


class _Shown(logging.Filter):
    """Without --debug: errors, and the token cache's warnings, each once per run.

    The cache's warnings (a refused or corrupt file, a loose folder, a failed save)
    name a problem and its fix that the person must see whatever the command.
    """

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR and not (
            record.levelno >= logging.WARNING and record.name.startswith("textstack_sdk.cache")
        ):
            return False
        text = record.getMessage()
        if text in self._seen:
            return False
        self._seen.add(text)
        return True


@contextlib.contextmanager
def sdk_logging(debug: bool) -> Any:
    logger = logging.getLogger("textstack_sdk")
    handler = logging.StreamHandler(sys.stderr)
    if debug:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(name)s %(levelname)s %(threadName)s: %(message)s")
        )
    else:
        handler.setFormatter(_OneLine())
        handler.addFilter(_Shown())
    old_level, old_propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if debug else logging.WARNING)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        logger.propagate = old_propagate
