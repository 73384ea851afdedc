"""Token providers: the protocol, the static (CI) provider, and the environment factory."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Optional, Protocol, runtime_checkable

from ._models import Authorized, Failed, TokenResult

__all__ = ["StaticTokenProvider", "TokenProvider", "provider_from_env"]

ENV_TOKEN = "TEXTSTACK_MCP_TOKEN"


@runtime_checkable
class TokenProvider(Protocol):
    """Gives a bearer token, or says why not. Implementations must be thread-safe.

    ``get_token`` must not block on a person. A provider may also offer
    ``invalidate(access_token)``: the client calls it when the server answered 401 to
    that token, so the next ``get_token`` obtains a new one.
    """

    def get_token(self) -> TokenResult:
        """Returns a token, a pending sign-in, or why neither is possible; never waits for a person.

        Returns:
            ``Authorized`` with the bearer token, ``Pending`` while a person still has to
            approve a sign-in, or ``Failed`` (with ``retryable``) when neither is possible.
            Errors are reported as ``Failed``, not raised.
        """


class StaticTokenProvider:
    """A fixed bearer token, e.g. from ``TEXTSTACK_MCP_TOKEN`` in CI. Thread-safe (immutable)."""

    __slots__ = ("_result",)

    def __init__(self, token: Optional[str]) -> None:
        stripped = token.strip() if isinstance(token, str) else ""
        self._result: TokenResult = (
            Authorized(stripped) if stripped else Failed(f"no {ENV_TOKEN} configured")
        )

    def get_token(self) -> TokenResult:
        """The fixed token: always the same answer, no I/O.

        Returns:
            ``Authorized`` with the token, or ``Failed`` (not retryable) when it was empty.
        """
        return self._result

    def __repr__(self) -> str:
        state = "set" if isinstance(self._result, Authorized) else "empty"
        return f"StaticTokenProvider(<{state}>)"


def provider_from_env(environ: Optional[Mapping[str, str]] = None) -> TokenProvider:
    """The provider the environment asks for.

    ``TEXTSTACK_MCP_TOKEN`` set and non-empty gives a StaticTokenProvider, which touches
    no file and no lock. Otherwise a TokenManager configured from the environment
    (API URL, site host, cache path, timeout).

    Args:
        environ: The environment to read; ``os.environ`` when None.
    """
    env = os.environ if environ is None else environ
    token = env.get(ENV_TOKEN, "")
    if token.strip():
        return StaticTokenProvider(token)
    from ._token_manager import TokenManager

    return TokenManager.from_env(env)
