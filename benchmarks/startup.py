"""Benchmark 4: import cost of ``textstack_sdk`` vs ``urllib3`` (and peers), and no
``cryptography`` in the core.

Each import runs in a fresh interpreter with ``-X importtime``; the figure is the
cumulative microseconds of the top-level package line. Runs are interleaved and the
median is reported with its spread.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Optional

from ._common import Config, Row, interleaved, ratio_rows

__all__ = ["run"]

SECTION = "start-up (import µs, -X importtime)"
BASE = "import urllib3"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def import_us(module: str) -> float:
    """Cumulative import time of ``module`` in a fresh interpreter, in microseconds."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
        check=True,
    )
    found: Optional[float] = None
    for line in done.stderr.splitlines():
        if not line.startswith("import time:"):
            continue
        parts = line[len("import time:") :].split("|")
        if len(parts) == 3 and parts[2].strip() == module:
            found = float(parts[1])
    if found is None:
        raise RuntimeError(f"no importtime line for {module}")
    return found


def heavy_imports() -> list[str]:
    """Top-level packages of note that ``import textstack_sdk`` loads."""
    code = (
        "import sys, textstack_sdk\n"
        "names = {m.split('.')[0] for m in sys.modules}\n"
        "print(','.join(sorted(n for n in names if n in "
        "{'cryptography', 'urllib3', 'requests', 'httpx', 'jwt', 'ssl', 'json', 'email'})))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
        check=True,
    )
    return [n for n in done.stdout.strip().split(",") if n]


def run(config: Config) -> list[Row]:
    """Import times (ratio to ``import urllib3``) and the no-cryptography check."""
    modules = {"import textstack_sdk": "textstack_sdk", BASE: "urllib3"}
    notes = {}
    for peer in ("requests", "httpx", "msal", "google.auth", "botocore"):
        top = peer.split(".")[0]
        try:
            __import__(top)
        except ImportError:
            notes[peer] = "not installed"
            continue
        modules[f"import {peer}"] = peer
    samples = interleaved(
        {label: (lambda m=module: import_us(m)) for label, module in modules.items()},
        config.import_runs,
    )
    rows = ratio_rows(SECTION, samples, BASE, "µs")
    for peer, why in notes.items():
        rows.append(Row(SECTION, f"import {peer}", None, "µs", note=f"n/a: {why}"))
    loaded = heavy_imports()
    rows.append(
        Row(
            "start-up checks",
            "import textstack_sdk loads cryptography",
            1.0 if "cryptography" in loaded else 0.0,
            "bool",
            note="also loaded: " + (", ".join(n for n in loaded if n != "cryptography") or "-"),
            extra={"loaded": loaded},
        )
    )
    return rows
