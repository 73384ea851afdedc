"""CHANGELOG.md and the package agree on the version, in Keep a Changelog form."""

from __future__ import annotations

import re
from pathlib import Path

import textstack_sdk

CHANGELOG = Path(__file__).resolve().parents[1] / "CHANGELOG.md"
_RELEASE = re.compile(r"^## \[(?P<version>[^\]]+)\](?: - (?P<date>\d{4}-\d{2}-\d{2}))?$", re.M)


def test_the_newest_release_in_the_changelog_is_the_package_version() -> None:
    headings = _RELEASE.findall(CHANGELOG.read_text(encoding="utf-8"))
    assert headings[0] == ("Unreleased", ""), "changes in progress go under [Unreleased]"
    released = headings[1:]
    assert released, "no released version in CHANGELOG.md"
    assert all(date for _, date in released), "every release heading has a date"
    assert released[0][0] == textstack_sdk.__version__


def test_release_dates_go_back_in_time() -> None:
    dates = [date for _, date in _RELEASE.findall(CHANGELOG.read_text(encoding="utf-8")) if date]
    assert dates == sorted(dates, reverse=True)
