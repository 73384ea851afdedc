"""When a cached access token stops being handed out. Pure: times are arguments.

Computed once per token set (when it is stored), so the hot path only compares a float
against the wall clock.
"""

from __future__ import annotations

from typing import Optional

__all__ = ["trusted_exp", "usable_until"]


def usable_until(
    exp: Optional[float],
    received_at: Optional[float],
    *,
    skew: float,
    min_refresh_interval: float,
    trust_past_exp: bool = True,
) -> float:
    """The wall-clock time until which the access token is returned without a refresh.

    Args:
        exp: The JWT ``exp`` (Unix seconds), or None when unreadable.
        received_at: When the server issued this token to us (wall clock), or None when
            it came from the cache.
        skew: Seconds before ``exp`` at which a token counts as expired.
        min_refresh_interval: The least time between two refreshes of a token that has
            just arrived with an unreadable, already-past or very short ``exp``.
        trust_past_exp: Whether a just-received token whose exp is already past is
            trusted for ``min_refresh_interval``. True for tokens the server just gave
            us (our clock may be off); False for tokens read from the cache, which may
            simply be old.

    Returns:
        Unix seconds; a time in the past means "refresh now".
    """
    if exp is not None and (received_at is None or exp - skew > received_at):
        return exp - skew
    if received_at is None:
        return float("-inf")
    # A brand-new token whose exp is unreadable, already past (our clock is off) or
    # inside the skew window: trust the server for a while rather than refreshing on
    # every call; a 401 from the API still forces a refresh.
    if exp is not None and exp > received_at:
        return min(exp, received_at + min_refresh_interval)
    if exp is not None and not trust_past_exp:
        return exp - skew
    return received_at + min_refresh_interval


def trusted_exp(
    jwt_exp: Optional[float], stated_exp: Optional[float], now: float, *, grace: float
) -> Optional[float]:
    """The expiry to believe for an access token read from a cache.

    Args:
        jwt_exp: The token's own ``exp`` claim, None when unreadable.
        stated_exp: What the cache says (its ``accessExpiresAt``), None when absent.
        now: Wall-clock seconds.
        grace: The longest life believed on the cache's word alone: the grace a freshly
            issued token with an unreadable exp gets, so that the expiry this package
            writes for such a token is believed by the next process (no refresh storm).

    Returns:
        ``stated_exp`` may shorten ``jwt_exp``, never lengthen it. Without ``jwt_exp``,
        ``stated_exp`` is believed only up to ``now + grace``; further ahead (or absent)
        gives None: expired.
    """
    if jwt_exp is not None:
        return jwt_exp if stated_exp is None else min(jwt_exp, stated_exp)
    if stated_exp is not None and stated_exp <= now + grace:
        return stated_exp
    return None
