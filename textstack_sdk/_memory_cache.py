"""A token cache that lives only in this process (notebooks, tests, short scripts)."""

from __future__ import annotations

import threading
from typing import Optional

from ._models import TokenSet

__all__ = ["MemoryTokenCache"]


class MemoryTokenCache:
    """Keeps one TokenSet in memory. Thread-safe (one lock); nothing touches the disk."""

    def __init__(self, tokens: Optional[TokenSet] = None) -> None:
        self._lock = threading.Lock()
        self._tokens = tokens
        self._version = 0

    def load(self) -> Optional[TokenSet]:
        """The stored tokens, or None when nothing is stored."""
        with self._lock:
            return self._tokens

    def save(self, tokens: TokenSet) -> bool:
        """Stores ``tokens``, replacing any before them.

        Returns:
            Always True: memory cannot fail to hold them.
        """
        with self._lock:
            self._tokens = tokens
            self._version += 1
        return True

    def clear(self) -> bool:
        """Forgets the stored tokens.

        Returns:
            Always True.
        """
        with self._lock:
            self._tokens = None
            self._version += 1
        return True

    def signature(self) -> int:
        """Changes on every save or clear, like a file's stat would."""
        with self._lock:
            return self._version

    def __repr__(self) -> str:
        return "MemoryTokenCache()"
