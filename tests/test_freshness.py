import math

from textstack_sdk._freshness import usable_until

KW = {"skew": 30.0, "min_refresh_interval": 60.0}


def test_normal_token_expires_skew_before_exp() -> None:
    assert usable_until(1000.0, 100.0, **KW) == 970.0
    assert usable_until(1000.0, None, **KW) == 970.0


def test_cached_token_with_unknown_exp_is_stale() -> None:
    assert usable_until(None, None, **KW) == -math.inf


def test_new_token_with_unknown_exp_is_trusted_for_the_rate_limit() -> None:
    assert usable_until(None, 100.0, **KW) == 160.0


def test_new_token_already_past_exp_does_not_cause_a_storm() -> None:
    # Our clock runs ahead of the server's: the fresh token looks expired.
    assert usable_until(50.0, 100.0, **KW) == 160.0


def test_short_lived_token_is_used_until_its_real_exp() -> None:
    assert usable_until(110.0, 100.0, **KW) == 110.0


def test_cached_token_with_past_exp_is_stale_even_if_just_written() -> None:
    assert usable_until(50.0, 100.0, trust_past_exp=False, **KW) == 20.0
    assert usable_until(None, 100.0, trust_past_exp=False, **KW) == 160.0
