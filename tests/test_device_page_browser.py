"""The local server's ``/device`` approval page, driven in a real headless Chromium.

A person's path through the page: open the verification link, type the code shown by
the application, approve or deny; mistype it; come back after it expired. Each time the
test reads what the page shows and checks what the SDK then sees.

Needs Debian's ``chromium`` and ``chromium-driver`` packages (``.ci/run`` installs them)
and ``selenium`` (the ``test`` extra), which is given both paths, so it downloads nothing.
Skipped with the reason outside CI when they are missing; under ``CI=true`` it fails.

``TEXTSTACK_UPDATE_SCREENSHOTS=1`` also writes the docs' screenshot
(``docs/images/device-page.png``); otherwise the test leaves the checkout as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

from textstack_sdk import (
    Authorized,
    MemoryTokenCache,
    Pending,
    TokenManager,
)
from textstack_sdk.testing import FakeClock, FakeTextStackServer

REPO = Path(__file__).resolve().parents[1]
SCREENSHOT = REPO / "docs" / "images" / "device-page.png"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _browser_paths() -> tuple[str, str]:
    """Chromium and its driver, or a skip (a failure under CI) naming what is missing."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    missing = [
        name
        for name, found in (("chromium", chromium), ("chromium-driver (chromedriver)", driver))
        if found is None
    ]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip install -e '.[test]')")
    if missing:
        reason = "needs " + ", ".join(missing) + " (apt-get install chromium chromium-driver)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the browser test: {reason}")
        pytest.skip(reason)
    assert chromium is not None and driver is not None
    return chromium, driver


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium, driver = _browser_paths()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=720,640",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(argument)
    chrome = webdriver.Chrome(options=options, service=Service(driver))
    chrome.set_page_load_timeout(20)
    try:
        yield chrome
    finally:
        chrome.quit()


@pytest.fixture
def server() -> Iterator[FakeTextStackServer]:
    with FakeTextStackServer(interval=0.05) as srv:
        yield srv


@pytest.fixture
def tokens(server: FakeTextStackServer) -> Iterator[TokenManager]:
    manager = TokenManager(
        api_url=server.api_url,
        site_host=server.site_host,
        cache=MemoryTokenCache(),
        prompt=False,
        min_poll_interval=0.05,
    )
    yield manager
    manager.close()


def _pending(tokens: TokenManager) -> Pending:
    result = tokens.get_token()
    assert isinstance(result, Pending), result
    return result


def _page(browser: Any) -> dict[str, Any]:
    """What a person sees: the heading, the result notice, the form's field, the text."""
    from selenium.webdriver.common.by import By

    def texts(css: str) -> list[str]:
        return [e.text for e in browser.find_elements(By.CSS_SELECTOR, css)]

    fields = browser.find_elements(By.ID, "user_code")
    notices = browser.find_elements(By.ID, "result")
    return {
        "title": browser.title,
        "h1": texts("h1"),
        "outcome": notices[0].get_attribute("data-outcome") if notices else None,
        "notice": notices[0].text if notices else None,
        "field": fields[0].get_attribute("value") if fields else None,
        "buttons": texts("button"),
        "text": browser.find_element(By.TAG_NAME, "body").text,
    }


def _type(browser: Any, typed: str) -> None:
    """Types into the code field, replacing what is there, as a person would."""
    from selenium.webdriver.common.by import By

    field = browser.find_element(By.ID, "user_code")
    field.clear()
    field.send_keys(typed)


def _submit(browser: Any, typed: str, button: str) -> dict[str, Any]:
    """Types ``typed`` into the code field and clicks a button; the page that follows."""
    _type(browser, typed)
    return _click(browser, button)


def _click(browser: Any, button: str) -> dict[str, Any]:
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    # A mark on the old page's window: a new document has none. Probing an element of
    # the old page instead (staleness_of) races the navigation, and chromedriver may then
    # answer with an inspector error rather than "stale element".
    browser.execute_script("window.__textstackOldPage = true;")
    browser.find_element(By.XPATH, f"//button[normalize-space()='{button}']").click()
    WebDriverWait(browser, 10, ignored_exceptions=(WebDriverException,)).until(
        lambda b: b.execute_script(
            "return window.__textstackOldPage === undefined && document.readyState === 'complete';"
        )
    )
    return _page(browser)


# ---------------------------------------------------------------------------- tests


@pytest.mark.timeout(60)
def test_a_person_types_the_code_and_approves(
    browser: Any, server: FakeTextStackServer, tokens: TokenManager
) -> None:
    pending = _pending(tokens)
    assert pending.verification_uri == f"{server.base_url}/device"
    browser.get(pending.verification_uri)  # the plain link: the person types the code

    form = _page(browser)
    assert form["h1"] == ["Connect a device"]
    assert form["field"] == ""
    assert form["buttons"] == ["Approve", "Deny"]
    assert "connect it to your textstack.app account" in form["text"]
    assert "Local TextStack server, for testing" in form["text"]

    # People type codes in lower case and without the dash; the page takes them.
    typed = pending.user_code.lower().replace("-", "")
    done = _submit(browser, typed, "Approve")

    assert done["h1"] == ["Device connected"]
    assert done["outcome"] == "approve"
    assert done["notice"] == "The application is connected. You can return to it."
    assert f"Code: {typed}" in done["text"]
    assert done["field"] is None  # a decision is final: no form to send again
    assert isinstance(tokens.wait_for_token(timeout=10), Authorized)


@pytest.mark.timeout(60)
def test_the_prefilled_link_then_deny(
    browser: Any, server: FakeTextStackServer, tokens: TokenManager, tmp_path: Path
) -> None:
    pending = _pending(tokens)
    assert pending.link == f"{server.base_url}/device?code={pending.user_code}"
    browser.get(pending.link)
    assert _page(browser)["field"] == pending.user_code
    _screenshot(browser, tmp_path)

    done = _submit(browser, pending.user_code, "Deny")

    assert done["h1"] == ["Request denied"]
    assert done["outcome"] == "deny"
    assert done["notice"] == "The application will not get access."
    # The SDK's poller hears the denial and ends the sign-in (the next call starts anew).
    assert _eventually(lambda: tokens.status().last_error == "the sign-in was denied.")
    assert tokens.status().pending is None

    # The back button and the same code again: it is spent.
    browser.back()
    again = _submit(browser, pending.user_code, "Approve")
    assert again["outcome"] == "user_code_already_used"
    assert again["notice"] == "That code has already been used."
    assert again["field"] == ""  # only a new code can help


@pytest.mark.timeout(60)
def test_a_wrong_code_is_refused_and_can_be_corrected_in_place(
    browser: Any, server: FakeTextStackServer, tokens: TokenManager
) -> None:
    pending = _pending(tokens)
    browser.get(pending.verification_uri)
    wrong = "BCDF-GHJK" if pending.user_code != "BCDF-GHJK" else "GHJK-BCDF"

    refused = _submit(browser, wrong, "Approve")

    assert refused["h1"] == ["Code not accepted"]
    assert refused["outcome"] == "invalid_user_code"
    assert refused["notice"] == "That code is not valid. Check it and try again."
    assert refused["field"] == wrong  # kept, to fix the typo
    assert server.pending_user_codes() == [pending.user_code]  # nothing was decided

    fixed = _submit(browser, pending.user_code, "Approve")
    assert fixed["outcome"] == "approve"
    assert isinstance(tokens.wait_for_token(timeout=10), Authorized)


@pytest.mark.timeout(60)
def test_an_expired_code_is_refused(browser: Any) -> None:
    clock = FakeClock()
    with FakeTextStackServer(clock=clock, device_code_lifetime=600) as server:
        user_code = _start_device_flow(server)["user_code"]
        browser.get(f"{server.base_url}/device?code={user_code}")
        clock.advance(601)

        refused = _submit(browser, user_code, "Approve")

        assert refused["h1"] == ["Code not accepted"]
        assert refused["outcome"] == "expired_user_code"
        assert refused["notice"] == (
            "That code has expired. Start the sign-in again in your application."
        )
        assert refused["field"] == ""
        assert server.pending_user_codes() == []


def _eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """True once ``predicate`` holds (checked every 20 ms), False after ``timeout``."""
    pause = threading.Event()
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return True
        pause.wait(0.02)
    return predicate()


def _start_device_flow(server: FakeTextStackServer) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{server.api_url}/auth/device/code",
        data=b"{}",
        headers={"Host": server.site_host, "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        flow: dict[str, Any] = json.load(answer)
    return flow


def _screenshot(browser: Any, tmp_path: Path) -> None:
    """The form with a code typed in, as the docs show it; a real PNG of the page."""
    shot = tmp_path / "device-page.png"
    assert browser.save_screenshot(str(shot))
    data = shot.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 5_000
    if os.environ.get("TEXTSTACK_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        SCREENSHOT.write_bytes(data)
