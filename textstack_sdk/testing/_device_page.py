"""The ``/device`` approval page: a small HTML form, every value escaped. Pure."""

from __future__ import annotations

import html

__all__ = ["SECURITY_HEADERS", "form_page", "result_page"]

SECURITY_HEADERS = (
    (
        "Content-Security-Policy",
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Cache-Control", "no-store"),
)

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem}"
    "input{font-size:1.4rem;letter-spacing:.15rem;width:12rem;text-transform:uppercase}"
    "button{font-size:1rem;margin:.8rem .5rem 0 0;padding:.4rem 1rem}"
)

_MESSAGES = {
    "approve": "Device connected. You can return to your application.",
    "deny": "Request denied. The application will not get access.",
    "invalid_user_code": "That code is not valid. Check it and try again.",
    "expired_user_code": "That code has expired. Start again in your application.",
    "user_code_already_used": "That code has already been used.",
    "invalid_action": "Choose Approve or Deny.",
}


def _page(title: str, inner: str) -> bytes:
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{inner}</body></html>"
    ).encode()


def form_page(code: str, site_host: str) -> bytes:
    """The form, its code field prefilled (escaped) from ``?code=``."""
    return _page(
        "Connect a device",
        f"<p>Enter the code shown by the application to connect it to your "
        f"{html.escape(site_host)} account.</p>"
        "<form method='post' action='/device'>"
        "<label for='user_code'>Code</label><br>"
        f"<input id='user_code' name='user_code' value='{html.escape(code, quote=True)}' "
        "autocomplete='off' maxlength='32' required><br>"
        "<button type='submit' name='action' value='approve'>Approve</button>"
        "<button type='submit' name='action' value='deny'>Deny</button>"
        "</form>",
    )


def result_page(outcome: str, code: str) -> bytes:
    """The answer to a form POST; ``outcome`` is an action or an error code."""
    message = _MESSAGES.get(outcome, "Something went wrong.")
    ok = outcome in ("approve", "deny")
    return _page(
        "Done" if ok else "Not done",
        f"<p id='result' data-outcome='{html.escape(outcome, quote=True)}'>"
        f"{html.escape(message)}</p>"
        f"<p>Code: <code>{html.escape(code)}</code></p>"
        + ("" if ok else "<p><a href='/device'>Try again</a></p>"),
    )
