"""Hooks of the adversarial suite: bind counts to tests, write docs/RELIABILITY.md.

The report is regenerated on request only: with ``TEXTSTACK_WRITE_RELIABILITY=1``, at
the end of a session that ran the whole suite (every module collected, nothing
deselected), so a partial run (``-k``, one file) never replaces the committed table with
a partial one. Any other run leaves the checkout clean: the table is rendered (so a
rendering bug still fails the run) but written nowhere.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

import pytest

from . import _budget
from ._report import RECORDER

_HERE = Path(__file__).resolve().parent
_MODULES = frozenset(
    {
        "test_properties.py",
        "test_wire_faults.py",
        "test_proxy_faults.py",
        "test_crash_loop.py",
        "test_secret_canary.py",
        "test_encryption.py",
        "test_token_lifecycle.py",
        "test_many_hosts.py",
    }
)
WRITE_ENV = "TEXTSTACK_WRITE_RELIABILITY"
_COMMAND = f"{WRITE_ENV}=1 PYTHONPATH=. pytest tests/adversarial"
_state: dict[str, Any] = {"collected": set(), "deselected": 0, "start": time.monotonic()}


def _is_ours(item: pytest.Item) -> bool:
    return Path(str(item.fspath)).resolve().parent == _HERE


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _is_ours(item):
            _state["collected"].add(Path(str(item.fspath)).name)


def pytest_deselected(items: list[pytest.Item]) -> None:
    _state["deselected"] += sum(1 for item in items if _is_ours(item))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: Any) -> Any:
    RECORDER.current = item.nodeid if _is_ours(item) else None
    yield
    RECORDER.current = None


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" or report.outcome != "passed":
        if hasattr(report, "wasxfail") and report.outcome in ("skipped", "passed"):
            outcome = "xfailed" if report.outcome == "skipped" else "failed"
        else:
            outcome = report.outcome
        if report.when == "call" or outcome != "skipped":
            RECORDER.outcome(report.nodeid, outcome)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not RECORDER.has_data or _state["deselected"] or _state["collected"] != _MODULES:
        return
    report = {
        "seed": _budget.SEED,
        "profile": _budget.PROFILE_NAME,
        "command": _COMMAND,
        "elapsed": time.monotonic() - _state["start"],
    }
    target = report_target(os.environ, Path(str(session.config.rootpath)))
    if target is None:
        RECORDER.render(**report)
    else:
        RECORDER.write(target, **report)


def report_target(environ: Mapping[str, str], root: Path) -> Optional[Path]:
    """Where the report goes: ``docs/RELIABILITY.md`` when asked for, else nowhere."""
    if environ.get(WRITE_ENV) != "1":
        return None
    return root / "docs" / "RELIABILITY.md"
