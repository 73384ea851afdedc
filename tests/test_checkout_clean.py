"""Running the tests leaves the checkout clean and points nowhere outside it."""

from __future__ import annotations

import pathlib
import re

from adversarial.conftest import WRITE_ENV, report_target

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_reliability_report_is_written_only_on_request() -> None:
    assert report_target({}, ROOT) is None
    assert report_target({WRITE_ENV: "0"}, ROOT) is None
    assert report_target({"TEXTSTACK_ADVERSARIAL_REPORT": "1"}, ROOT) is None
    assert report_target({WRITE_ENV: "1"}, ROOT) == ROOT / "docs" / "RELIABILITY.md"


def test_no_test_points_at_a_file_outside_the_repository() -> None:
    # A message naming ../shared/... or an absolute path of one machine means nothing
    # to whoever reads the failure in a clone.
    outside = re.compile(r"\.\./shared|/work/")
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sorted((ROOT / "tests").rglob("*.py"))
        if path.name != pathlib.Path(__file__).name
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if outside.search(line)
    ]
    assert offenders == []
