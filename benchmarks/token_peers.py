"""Offline hot paths of peer SDKs: msal, google-auth and botocore, each on a warm cache.

Each ``make_*`` returns ``(call, cleanup)`` where ``call()`` is one "give me the token
for this request" on a valid cached token, or raises ``Unavailable`` with the reason.
Nothing here touches the network: msal gets a stub HTTP client that answers only the
authority's OpenID discovery document and fails on anything else.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
import time
from typing import Any, Callable, Optional

__all__ = ["PEERS", "Unavailable"]

Setup = tuple[Callable[[], object], Callable[[], None]]
FAR = 10 * 365 * 86400


class Unavailable(Exception):
    """This peer cannot be measured here (not installed, or not offline)."""


def _b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unsigned_jwt(claims: dict[str, Any]) -> str:
    return _b64({"alg": "none", "typ": "JWT"}) + "." + _b64(claims) + "."


# ---------------------------------------------------------------- msal

_TENANT = "bench-tenant"
_AUTHORITY = f"https://login.microsoftonline.com/{_TENANT}"


class _StubResponse:
    def __init__(self, status_code: int, body: dict[str, Any]) -> None:
        self.status_code = status_code
        self.text = json.dumps(body)
        self.headers: dict[str, str] = {}

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise RuntimeError(f"stub HTTP {self.status_code}")


class _DiscoveryOnlyHttp:
    """Answers the OIDC discovery document; every other request is a test failure."""

    def __init__(self) -> None:
        self.unexpected = 0

    def get(self, url: str, **kwargs: Any) -> _StubResponse:
        if url.endswith("/.well-known/openid-configuration"):
            base = f"https://login.microsoftonline.com/{_TENANT}"
            return _StubResponse(
                200,
                {
                    "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                    "token_endpoint": f"{base}/oauth2/v2.0/token",
                    "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                    "issuer": f"{base}/v2.0",
                },
            )
        self.unexpected += 1
        raise RuntimeError(f"network access in an offline benchmark: GET {url}")

    def post(self, url: str, **kwargs: Any) -> _StubResponse:
        self.unexpected += 1
        raise RuntimeError(f"network access in an offline benchmark: POST {url}")

    def close(self) -> None:
        pass


def make_msal() -> Setup:
    """``PublicClientApplication.acquire_token_silent`` on a pre-filled cache."""
    try:
        import msal
    except ImportError as exc:
        raise Unavailable("msal is not installed") from exc
    client_id = "00000000-0000-0000-0000-00000000b0b0"
    uid, utid = "uid-1", _TENANT
    http = _DiscoveryOnlyHttp()
    cache = msal.SerializableTokenCache()
    now = int(time.time())
    id_token = _unsigned_jwt(
        {
            "aud": client_id,
            "iss": f"{_AUTHORITY}/v2.0",
            "iat": now,
            "exp": now + FAR,
            "oid": uid,
            "tid": utid,
            "preferred_username": "bench@example.com",
            "sub": "subject",
        }
    )
    cache.add(
        {
            "client_id": client_id,
            "scope": ["User.Read"],
            "token_endpoint": f"{_AUTHORITY}/oauth2/v2.0/token",
            "response": {
                "token_type": "Bearer",
                "access_token": "msal-access-token",
                "expires_in": FAR,
                "ext_expires_in": FAR,
                "refresh_token": "msal-refresh-token",
                "id_token": id_token,
                "client_info": _b64({"uid": uid, "utid": utid}),
            },
            "grant_type": "device_code",
        },
        now=now,
    )
    app = msal.PublicClientApplication(
        client_id,
        authority=_AUTHORITY,
        token_cache=cache,
        http_client=http,
        instance_discovery=False,
    )
    accounts = app.get_accounts()
    if not accounts:
        raise Unavailable("msal did not see the pre-filled account")
    account = accounts[0]
    scopes = ["User.Read"]
    result = app.acquire_token_silent(scopes, account=account)
    if not result or result.get("access_token") != "msal-access-token" or http.unexpected:
        raise Unavailable(f"msal did not answer from its cache offline ({result!r:.80})")

    def call() -> object:
        return app.acquire_token_silent(scopes, account=account)

    def check() -> None:
        if http.unexpected:
            raise RuntimeError("msal tried the network during the benchmark")

    return call, check


# ---------------------------------------------------------------- google-auth


def make_google() -> Setup:
    """``Credentials.valid`` + ``Credentials.apply(headers)`` with a far expiry."""
    try:
        import datetime

        from google.oauth2.credentials import Credentials
    except ImportError as exc:
        raise Unavailable("google-auth is not installed") from exc
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    expiry = now + datetime.timedelta(days=3650)  # google-auth wants naive UTC
    creds = Credentials(token="google-access-token", expiry=expiry)
    headers: dict[str, str] = {}
    if not creds.valid:
        raise Unavailable("google-auth does not consider the far-future token valid")

    def call() -> object:
        if creds.valid:
            creds.apply(headers)
        return headers

    call()
    if headers.get("authorization") != "Bearer google-access-token":
        raise Unavailable("google-auth did not set the Authorization header")
    return call, lambda: None


# ---------------------------------------------------------------- botocore


def make_botocore() -> Setup:
    """``SSOTokenProvider.load_token().get_frozen_token()`` over a cache file in a temp dir."""
    try:
        import botocore.session
        from botocore.tokens import SSOTokenProvider
        from botocore.utils import JSONFileCache
    except ImportError as exc:
        raise Unavailable("botocore is not installed") from exc
    import hashlib

    folder = tempfile.TemporaryDirectory(prefix="bench-botocore-")
    config = os.path.join(folder.name, "config")
    cache_dir = os.path.join(folder.name, "sso-cache")
    os.makedirs(cache_dir, mode=0o700)
    start_url = "https://bench.awsapps.com/start"
    with open(config, "w", encoding="utf-8") as out:
        out.write(
            "[profile bench]\nsso_session = bench\n\n"
            f"[sso-session bench]\nsso_region = us-east-1\nsso_start_url = {start_url}\n"
        )
    key = hashlib.sha1(b"bench").hexdigest()
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + FAR))
    with open(os.path.join(cache_dir, key + ".json"), "w", encoding="utf-8") as out:
        json.dump(
            {
                "startUrl": start_url,
                "region": "us-east-1",
                "accessToken": "botocore-access-token",
                "expiresAt": expires,
            },
            out,
        )
    session = botocore.session.Session(profile="bench")
    session.set_config_variable("config_file", config)
    provider = SSOTokenProvider(session, cache=JSONFileCache(cache_dir), profile_name="bench")
    token = provider.load_token()
    if token is None:
        folder.cleanup()
        raise Unavailable("botocore found no SSO token in the cache file")
    frozen = token.get_frozen_token()
    if frozen.token != "botocore-access-token":
        folder.cleanup()
        raise Unavailable("botocore returned a different token")

    def call() -> object:
        return token.get_frozen_token()

    return call, folder.cleanup


PEERS: dict[str, Callable[[], Setup]] = {
    "msal acquire_token_silent": make_msal,
    "google-auth valid+apply": make_google,
    "botocore SSO get_frozen_token": make_botocore,
}


def setup_peer(name: str) -> tuple[Optional[Setup], str]:
    """The peer's (call, cleanup), or (None, reason)."""
    try:
        return PEERS[name](), ""
    except Unavailable as exc:
        return None, str(exc)
    except Exception as exc:
        return None, f"setup failed: {type(exc).__name__}: {exc}"[:200]
