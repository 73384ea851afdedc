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
    "body{font-family:system-ui,sans-serif;color:#1f2328;background:#f6f8fa;margin:0;"
    "padding:3rem 1rem}"
    "main{max-width:30rem;margin:0 auto;background:#fff;border:1px solid #d0d7de;"
    "border-radius:12px;padding:1.5rem 2rem 2rem;box-shadow:0 1px 3px rgba(0,0,0,.06)}"
    ".badge{display:inline-block;font-size:.8rem;color:#57606a;border:1px solid #d0d7de;"
    "border-radius:2rem;padding:.1rem .7rem}"
    "h1{font-size:1.6rem;margin:.8rem 0 .6rem}"
    "label{display:block;font-weight:600;margin:1.2rem 0 .4rem}"
    "input{box-sizing:border-box;width:100%;font:1.6rem ui-monospace,monospace;"
    "letter-spacing:.25rem;text-transform:uppercase;padding:.5rem .8rem;"
    "border:2px solid #d0d7de;border-radius:8px}"
    "input:focus{outline:none;border-color:#0969da}"
    ".hint{font-size:.85rem;color:#57606a;margin:.4rem 0 0}"
    ".buttons{display:flex;gap:.8rem;margin-top:1.4rem}"
    "button{font-size:1rem;font-weight:600;padding:.6rem 1.5rem;border-radius:8px;cursor:pointer}"
    ".approve{background:#1f883d;color:#fff;border:1px solid #1a7f37}"
    ".deny{background:#fff;color:#cf222e;border:1px solid #cf222e}"
    ".notice{border-radius:8px;padding:.8rem 1rem;margin:1rem 0}"
    ".ok{background:#dafbe1;border:1px solid #4ac26b}"
    ".stop{background:#eaeef2;border:1px solid #d0d7de}"
    ".error{background:#ffebe9;border:1px solid #ff8182}"
    "code{font-size:1.1rem;letter-spacing:.1rem}"
)

# The outcome's title, message and notice style; an unknown outcome is an error.
_OUTCOMES = {
    "approve": ("Device connected", "The application is connected. You can return to it.", "ok"),
    "deny": ("Request denied", "The application will not get access.", "stop"),
    "invalid_user_code": ("Code not accepted", "That code is not valid. Check it and try again."),
    "expired_user_code": (
        "Code not accepted",
        "That code has expired. Start the sign-in again in your application.",
    ),
    "user_code_already_used": ("Code not accepted", "That code has already been used."),
    "invalid_action": ("Code not accepted", "Choose Approve or Deny."),
}
_UNKNOWN = ("Code not accepted", "Something went wrong. Try again.")


def _page(title: str, inner: str) -> bytes:
    # This page only exists on the SDK's local server: say so, so nobody takes it for
    # the real TextStack site.
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        "<body><main><span class='badge'>Local TextStack server, for testing</span>"
        f"<h1>{html.escape(title)}</h1>{inner}</main></body></html>"
    ).encode()


def _form(code: str, site_host: str) -> str:
    autofocus = "" if code else " autofocus"
    return (
        f"<p>Enter the code shown by the application to connect it to your "
        f"{html.escape(site_host)} account.</p>"
        "<form method='post' action='/device'>"
        "<label for='user_code'>Code</label>"
        f"<input id='user_code' name='user_code' value='{html.escape(code, quote=True)}' "
        f"placeholder='XXXX-XXXX' autocomplete='off' spellcheck='false' maxlength='32' "
        f"required{autofocus}>"
        "<p class='hint'>Eight letters; upper or lower case, with or without the dash.</p>"
        "<div class='buttons'>"
        "<button class='approve' type='submit' name='action' value='approve'>Approve</button>"
        "<button class='deny' type='submit' name='action' value='deny'>Deny</button>"
        "</div></form>"
    )


def form_page(code: str, site_host: str) -> bytes:
    """The form, its code field prefilled (escaped) from ``?code=``."""
    return _page("Connect a device", _form(code, site_host))


def result_page(outcome: str, code: str, site_host: str = "textstack.app") -> bytes:
    """The answer to a form POST; ``outcome`` is an action or an error code.

    A decision (approve, deny) is final and shows the code it applied to; an error shows
    why, then the form again: with the code as typed when it may be a typo, empty when
    the code is spent (expired, used) and only a new one can help.
    """
    title, message, *style = _OUTCOMES.get(outcome, _UNKNOWN)
    notice = (
        f"<p id='result' class='notice {style[0] if style else 'error'}' "
        f"data-outcome='{html.escape(outcome, quote=True)}'>{html.escape(message)}</p>"
    )
    if style:
        return _page(title, notice + f"<p>Code: <code>{html.escape(code)}</code></p>")
    retry = code if outcome in ("invalid_user_code", "invalid_action") else ""
    return _page(title, notice + _form(retry, site_host))
