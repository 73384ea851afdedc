"""Benchmark 4: start-up. Import cost of ``textstack_sdk`` vs ``urllib3`` (and peers);
wall time of ``textstack token`` (static token) and ``textstack --help`` vs
``python -c pass``; which heavy modules each loads; where the time goes.

Each import runs in a fresh interpreter with ``-X importtime``; the figure is the
cumulative microseconds of the top-level package line. Commands run as subprocesses,
timed wall-clock from spawn to exit. Runs are interleaved (the order rotates) and the
median of the per-round ratios is reported with its spread. The ``-X importtime``
summary (the modules with the most self time) goes into the JSON facts.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from typing import Any, Optional

from ._common import Config, Row, interleaved, ratio_rows

__all__ = ["run"]

SECTION = "start-up (import µs, -X importtime)"
SECTION_CLI = "start-up (wall ms per command)"
BASE = "import urllib3"
PASS = "python -c pass"
TOKEN = "textstack token (static token)"
HELP = "textstack --help"
# Loaded by ``textstack token`` with a static token, any of these is a regression.
HEAVY = ("urllib3", "cryptography", "ssl", "json", "argparse", "logging", "http")


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


def _textstack() -> tuple[list[str], str]:
    """The ``textstack`` console script of this interpreter, else its equivalent."""
    script = os.path.join(os.path.dirname(sys.executable), "textstack")
    if os.path.exists(script):
        return [script], "the installed console script"
    code = "import sys; from textstack_sdk.cli import main; sys.exit(main())"
    return [
        sys.executable,
        "-c",
        code,
    ], "python -c 'from textstack_sdk.cli import main' (no script)"


def _cli_env() -> dict[str, str]:
    env = _env()
    env["TEXTSTACK_MCP_TOKEN"] = "bench-static-token"
    return env


def wall_ms(argv: list[str]) -> float:
    """Wall milliseconds from spawning ``argv`` to its exit (stdout discarded)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv, env=_cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    # A wait with a timeout polls with doubling sleeps (0.5, 1, 2 ... ms), which rounds
    # every figure up to the next step; a blocking wait ends when the process does.
    watchdog = threading.Timer(60.0, proc.kill)
    watchdog.start()
    try:
        code = proc.wait()
    finally:
        watchdog.cancel()
    elapsed = (time.perf_counter() - start) * 1000.0
    if code != 0:
        raise subprocess.CalledProcessError(code, argv)
    return elapsed


def loaded_by(argv: list[str]) -> list[str]:
    """Which of ``HEAVY`` (and textstack_sdk modules) the command ``argv`` imports."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *argv[1:]] if argv[0] == sys.executable
        else [sys.executable, "-X", "importtime", *argv],
        env=_cli_env(), capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    names = set()
    for line in done.stderr.splitlines():
        if line.startswith("import time:"):
            name = line.split("|")[-1].strip()
            top = name.split(".")[0]
            if top in HEAVY or name.startswith("textstack_sdk."):
                names.add(top if top in HEAVY else name)
    return sorted(names)


def _importtime_lines(argv: list[str]) -> list[tuple[str, int, int]]:
    """(module, self µs, cumulative µs) of each import under ``-X importtime``."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *argv[1:]] if argv[0] == sys.executable
        else [sys.executable, "-X", "importtime", *argv],
        env=_cli_env(), capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    found = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative, name = line[len("import time:") :].split("|")
        found.append((name.strip(), int(self_us), int(cumulative)))
    return found


def importtime_summary(argv: list[str], top: int = 12) -> list[dict[str, Any]]:
    """The modules with the most self time under ``-X importtime`` (one run), leaving out
    what the interpreter imports for ``python -c pass`` as well (site, encodings...)."""
    start = {name for name, _, _ in _importtime_lines([sys.executable, "-c", "pass"])}
    rows = [
        {"module": name, "self_us": self_us, "cumulative_us": cumulative}
        for name, self_us, cumulative in _importtime_lines(argv)
        if name not in start
    ]
    total = sum(r["self_us"] for r in rows)
    rows.sort(key=lambda r: -r["self_us"])
    return [{"modules": len(rows), "total_self_us": total}, *rows[:top]]


def _cli_rows(config: Config, facts: dict[str, Any]) -> list[Row]:
    script, how = _textstack()
    commands = {
        PASS: [sys.executable, "-c", "pass"],
        TOKEN: [*script, "token"],
        HELP: [*script, "--help"],
    }
    samples = interleaved(
        {label: (lambda argv=argv: wall_ms(argv)) for label, argv in commands.items()},
        config.import_runs * 2,
    )
    rows = ratio_rows(SECTION_CLI, samples, PASS, "ms", notes={TOKEN: f"via {how}"})
    loaded = loaded_by(commands[TOKEN])
    heavy = [n for n in loaded if n in HEAVY]
    rows.append(
        Row(
            "start-up checks",
            "textstack token (static token) loads urllib3 or cryptography",
            1.0 if {"urllib3", "cryptography"} & set(heavy) else 0.0,
            "bool",
            note="heavy modules loaded: " + (", ".join(heavy) or "none"),
            extra={"loaded": loaded},
        )
    )
    facts["importtime"] = {
        label: importtime_summary(argv)
        for label, argv in {
            "textstack token (static token)": commands[TOKEN],
            "textstack --help": commands[HELP],
            "import textstack_sdk": [sys.executable, "-c", "import textstack_sdk"],
            "from textstack_sdk import TextStackApiClient": [
                sys.executable,
                "-c",
                "from textstack_sdk import TextStackApiClient",
            ],
        }.items()
    }
    return rows


def run(config: Config, facts: Optional[dict[str, Any]] = None) -> list[Row]:
    """Import times (ratio to ``import urllib3``), command wall times (ratio to
    ``python -c pass``), and the module-set checks."""
    modules = {
        "import textstack_sdk": "textstack_sdk",
        BASE: "urllib3",
        # What a program that makes calls pays in all: the client and urllib3 under it.
        "import textstack_sdk._client": "textstack_sdk._client",
    }
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
    rows.extend(_cli_rows(config, facts if facts is not None else {}))
    return rows
