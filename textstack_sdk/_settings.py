"""Settings read from arguments or the environment, validated once. Pure."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Optional

from ._errors import ConfigurationError

__all__ = [
    "DEFAULT_API_URL",
    "DEFAULT_SITE_HOST",
    "DEFAULT_TIMEOUT",
    "redact_url",
    "resolve_api_url",
    "resolve_site_host",
    "resolve_timeout",
]

DEFAULT_API_URL = "https://textstack.app/api"
DEFAULT_SITE_HOST = "textstack.app"
DEFAULT_TIMEOUT = 15.0
MAX_TIMEOUT = 600.0

ENV_API_URL = "TEXTSTACK_API_URL"
ENV_SITE_HOST = "TEXTSTACK_SITE_HOST"
ENV_TIMEOUT = "TEXTSTACK_MCP_TIMEOUT_SECONDS"

# A DNS name or an IPv4 literal; no port, no scheme, nothing that could split a header.
_QUERY = re.compile(r"[?#].*", re.S)
_USERINFO = re.compile(r"^([^:/?#\s]*://)[^/?#]*@")
_HOST = re.compile(r"(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")


def _env_value(environ: Mapping[str, str], name: str) -> Optional[str]:
    value = environ.get(name)
    if value is None or not value.strip():
        return None
    return value.strip()


def redact_url(url: str, limit: int = 100) -> str:
    """A URL fit for an error message: userinfo and query hidden, length bounded.

    Both may carry credentials (``user:pw@``, ``?token=...``); the scheme, host, port and
    path are what a person needs to see what is wrong.
    """
    shown = _QUERY.sub("?***", _USERINFO.sub(r"\1***@", url))
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def resolve_api_url(value: Optional[str], environ: Mapping[str, str]) -> str:
    """The API base URL without a trailing slash; the transport checks its scheme.

    Raises:
        ConfigurationError: The URL has no scheme and host, or carries a query. The
            message names where the value came from and shows it with userinfo redacted.
    """
    source = "api_url"
    if value is None:
        env = _env_value(environ, ENV_API_URL)
        source, value = (ENV_API_URL, env) if env is not None else ("default", DEFAULT_API_URL)
    url = value.strip().rstrip("/")
    where = f"{source}={redact_url(url)!r}"
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme or not rest or rest.startswith("/"):
        raise ConfigurationError(f"{where}: the API URL must look like https://host/api")
    if "?" in rest or "#" in rest or any(ch.isspace() for ch in url):
        raise ConfigurationError(
            f"{where}: the API URL must not contain a query, a fragment or spaces"
        )
    from ._transport import check_url

    try:
        check_url(url)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{where}: {exc}") from None
    return url


def resolve_site_host(value: Optional[str], environ: Mapping[str, str]) -> str:
    """The exact ``Host`` header value.

    Raises:
        ConfigurationError: Not a bare host name (no scheme, port, path or spaces).
    """
    host = value if value is not None else _env_value(environ, ENV_SITE_HOST) or DEFAULT_SITE_HOST
    host = host.strip()
    if not _HOST.fullmatch(host):
        source = "site_host" if value is not None else ENV_SITE_HOST
        raise ConfigurationError(
            f"{source}={host[:100]!r}: the site host must be a bare host name such as textstack.app"
        )
    return host


def resolve_timeout(value: Optional[float], environ: Mapping[str, str]) -> float:
    """The per-request timeout in seconds, bounded to (0, 600].

    Raises:
        ConfigurationError: Not a number in range (the variable is named).
    """
    source = "timeout"
    raw: object = value
    if value is None:
        text = _env_value(environ, ENV_TIMEOUT)
        if text is None:
            return DEFAULT_TIMEOUT
        source, raw = ENV_TIMEOUT, text
    try:
        seconds = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigurationError(f"{source} must be a number of seconds, got {raw!r}") from None
    if isinstance(raw, bool) or not math.isfinite(seconds) or not 0 < seconds <= MAX_TIMEOUT:
        raise ConfigurationError(
            f"{source} must be between 0 and {MAX_TIMEOUT:g} seconds, got {raw!r}"
        )
    return seconds
