"""``textstack login | status | logout | token``: the sign-in commands.

No token is printed anywhere except by ``token`` on stdout.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, Optional

from .._errors import AuthorizationRequired, TextStackError
from .._text import for_terminal
from ._context import EXIT_AUTH, EXIT_OK, CacheNotSaved, Context
from ._format import describe_expiry, iso_utc, render_fields, to_json
from ._signin import Prompter, failed_to_error, sign_in

if TYPE_CHECKING:
    from .._models import Authorized, TokenResult

# Modules a command needs beyond these are imported inside it: ``token`` with a static
# token must not pay for JWT decoding, the models or HTTP (see benchmarks/startup.py).

__all__ = ["register"]


def cmd_login(ctx: Context) -> int:
    args = ctx.args
    if ctx.env_token():
        ctx.err(
            "textstack: note: TEXTSTACK_MCP_TOKEN is set; the SDK will use it instead of "
            "this sign-in while it stays set."
        )
    prompter = Prompter(ctx, no_browser=args.no_browser, force=args.browser)
    manager = ctx.manager(prompt=prompter)
    token = sign_in(ctx, manager, ctx.wait_timeout(), prompter)
    status = manager.status()
    who = f" as {for_terminal(status.subject)}" if status.subject else ""
    if status.store is not None:
        # A fleet sign-in lives in the token store; nothing is written on this host's disk.
        if status.store_state != "live":
            raise CacheNotSaved(
                f"signed in{who}, but the token store {for_terminal(status.store)} does not "
                f"hold the sign-in (state: {status.store_state}); check the store and run "
                "`textstack login` again"
            )
        ctx.out(f"Signed in{who}; the tokens are in the token store {for_terminal(status.store)}.")
        return 0
    cache = ctx.cache()
    problem = cache.save_problem
    if problem is None and not _holds(cache, token):
        # No save failed because none was tried: the cache's lock could not be taken
        # (an unusable lock file, or another process holding it), so the sign-in
        # stayed in memory. Only what can be read back counts as saved.
        problem = f"its lock file {cache.lock_path} could not be taken"
    if problem is not None:
        raise CacheNotSaved(_not_saved(who, status.cache_path or "", problem))
    where = f"; tokens saved to {for_terminal(status.cache_path)}" if status.cache_path else ""
    ctx.out(f"Signed in{who}{where}.")
    return 0


def _holds(cache: Any, token: Authorized) -> bool:
    """Whether the cache file now holds ``token`` (read back, as the next command will)."""
    try:
        stored = cache.load()
    except TextStackError:  # an undecryptable file: nothing this login wrote
        return False
    return stored is not None and stored.access_token == token.access_token


def _not_saved(who: str, path: str, problem: str) -> str:
    return (
        f"signed in{who}, but the tokens could not be saved to {path} ({problem}), so this "
        "sign-in ends with this command; fix: make that folder writable or free some "
        "space, or choose another file with --cache or TEXTSTACK_MCP_TOKEN_CACHE, then run "
        "`textstack login` again"
    )


def _status_data(ctx: Context) -> dict[str, Any]:
    from .._jwt import decode_exp, decode_subject
    from .._settings import resolve_api_url, resolve_site_host

    api_url = resolve_api_url(ctx.args.api_url, ctx.environ)
    site_host = resolve_site_host(ctx.args.site_host, ctx.environ)
    token = ctx.env_token()
    if token:
        exp = decode_exp(token)
        return {
            "source": "environment (TEXTSTACK_MCP_TOKEN)",
            "authorized": exp is None or exp > time.time(),
            "subject": decode_subject(token),
            "expires_at": exp,
            "has_refresh_token": False,
            "cache_path": None,
            "pending": None,
            "last_error": None,
            "encrypted": False,
            "key_id": None,
            "stored_key_id": None,
            "store": None,
            "api_url": api_url,
            "site_host": site_host,
        }
    manager = ctx.manager(prompt=False)
    status = manager.status()
    pending = status.pending
    return {
        "source": status.source,
        "authorized": status.authorized,
        "subject": status.subject,
        "expires_at": status.expires_at,
        "has_refresh_token": status.has_refresh_token,
        "cache_path": status.cache_path,
        "pending": None
        if pending is None
        else {
            "verification_uri": pending.verification_uri,
            "user_code": pending.user_code,
            "expires_at": iso_utc(pending.expires_at),
        },
        "last_error": status.last_error,
        "encrypted": status.encrypted,
        "key_id": status.key_id,
        "stored_key_id": status.stored_key_id,
        "store": None
        if status.store is None
        else {
            "location": status.store,
            "version": status.store_version,
            "state": status.store_state,
            "lease_holder": status.lease_holder,
        },
        "api_url": api_url,
        "site_host": site_host,
    }


def describe_encryption(data: dict[str, Any]) -> Optional[str]:
    """One line on the cache's encryption at rest (key ids only, never a key)."""
    if data["cache_path"] is None:
        return None
    key_id, stored = data["key_id"], data["stored_key_id"]
    if not data["encrypted"]:
        if stored:
            return f"the file is encrypted with key id {stored}, and no key is configured"
        return "off (set TEXTSTACK_CACHE_KEY to encrypt; `textstack cache key` makes one)"
    if stored is None or stored == key_id:
        return f"on, key id {key_id}"
    return f"on, key id {key_id}; the file is under key id {stored} (`textstack cache rekey`)"


def describe_store(store: Optional[dict[str, Any]]) -> Optional[str]:
    """One line on the fleet's token store: where, which version, who holds the lease."""
    if store is None:
        return None
    line = f"{store['location']} ({store['state']}"
    if store["version"] is not None:
        line += f", version {store['version']}"
    if store["lease_holder"]:
        line += f", refresh lease held by {store['lease_holder']}"
    return line + ")"


def cmd_status(ctx: Context) -> int:
    data = _status_data(ctx)
    now = time.time()
    if ctx.json:
        shown = dict(data)
        shown["expires_at"] = iso_utc(data["expires_at"])
        exp = data["expires_at"]
        shown["expires_in_seconds"] = None if exp is None else int(exp - now)
        ctx.out(to_json(shown))
        return EXIT_OK if data["authorized"] or data["has_refresh_token"] else EXIT_AUTH
    signed_in = data["authorized"] or data["has_refresh_token"]
    if data["authorized"]:
        state = "yes"
    elif data["has_refresh_token"]:
        state = "yes (the access token will be refreshed on next use)"
    else:
        state = "no (run `textstack login`)"
    pending = data["pending"]
    ctx.out(
        render_fields(
            [
                ("signed in", state),
                ("user", data["subject"] if signed_in else None),
                ("source", data["source"]),
                ("expires", describe_expiry(data["expires_at"], now) if signed_in else None),
                ("token cache", data["cache_path"]),
                ("token store", describe_store(data["store"])),
                ("encryption", describe_encryption(data)),
                ("api", f"{data['api_url']} (Host: {data['site_host']})"),
                (
                    "pending",
                    None
                    if pending is None
                    else f"open {pending['verification_uri']} and enter {pending['user_code']}",
                ),
                ("last error", data["last_error"]),
            ]
        )
    )
    # As `gh auth status`: scripts can test the exit code.
    return EXIT_OK if signed_in else EXIT_AUTH


def cmd_logout(ctx: Context) -> int:
    manager = ctx.manager(prompt=False)
    before = manager.status()
    manager.logout()
    path = for_terminal(before.cache_path or "")
    if before.store is not None:
        ctx.out(f"Signed out every host sharing the token store {for_terminal(before.store)}.")
    elif before.source == "none" and not before.has_refresh_token and not before.stored_key_id:
        ctx.out(f"Not signed in; nothing to remove{' at ' + path if path else ''}.")
    else:
        ctx.out(f"Signed out{'; removed ' + path if path else ''}.")
    if ctx.env_token():
        ctx.err("textstack: note: TEXTSTACK_MCP_TOKEN is still set in the environment.")
    return 0


def cmd_token(ctx: Context) -> int:
    token = ctx.env_token()
    if token:
        ctx.out(token)
        return 0
    from .._models import Failed, Pending

    if ctx.args.login:
        prompter = Prompter(ctx, no_browser=ctx.args.no_browser, force=False)
        result: TokenResult = sign_in(
            ctx, ctx.manager(prompt=prompter), ctx.wait_timeout(), prompter
        )
    else:
        result = ctx.manager(prompt=False).get_token()
    if isinstance(result, Pending):
        raise AuthorizationRequired(
            result.message,
            verification_uri=result.verification_uri,
            user_code=result.user_code,
        )
    if isinstance(result, Failed):
        raise failed_to_error(result)
    ctx.out(result.access_token)
    return 0


def register(add: Callable[..., Any]) -> None:
    """Adds the sign-in commands to the parser."""
    login = add(
        "login",
        cmd_login,
        "sign in with the device flow and wait for approval",
        examples=[
            ("sign in; the code and URL appear on stderr", "textstack login"),
            ("give up after two minutes", "textstack login --timeout 120"),
            ("on a machine without a browser", "textstack login --no-browser"),
        ],
    )
    login.set_defaults(waits=True)
    login.add_argument("--no-browser", action="store_true", help="never open a browser")
    login.add_argument(
        "--browser", action="store_true", help="open the browser even if not interactive"
    )
    status = add(
        "status",
        cmd_status,
        "show who is signed in, until when, and where (exit 3 when not signed in)",
        examples=[
            ("who am I, and until when", "textstack status"),
            ("in a script", "textstack status >/dev/null && echo signed in"),
            ("as JSON", "textstack status --json"),
        ],
    )
    status.add_argument("--json", action="store_true", help="print JSON instead of text")
    add(
        "logout",
        cmd_logout,
        "forget the saved sign-in",
        examples=[
            ("sign out here and in every process sharing the cache", "textstack logout"),
            ("forget the sign-in of another cache file", "textstack logout --cache PATH"),
        ],
    )
    token = add(
        "token",
        cmd_token,
        "print the access token (refreshed if needed) on stdout",
        examples=[
            (
                "use the token in another tool",
                'curl -H "Authorization: Bearer $(textstack token)" ...',
            ),
            ("sign in first when needed", "textstack token --login"),
        ],
    )
    token.add_argument(
        "--login",
        action="store_true",
        help="sign in (and wait, up to --timeout) when not signed in",
    )
    token.add_argument("--no-browser", action="store_true", help="never open a browser")
