"""``python -m textstack_sdk``: the ``textstack`` command line."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
