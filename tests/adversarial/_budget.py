"""How hard the adversarial suite pushes: small for CI, large with TEXTSTACK_ADVERSARIAL=full.

Everything random here is seeded: ``SEED`` (``TEXTSTACK_ADVERSARIAL_SEED``, a fixed
default) drives every fault schedule and kill moment, so a failing run is replayed by
setting the same seed. Hypothesis is derandomized in the CI profile (the same examples
every run, so CI never turns red on a new draw) and explores freshly in the full profile,
printing a reproduction blob when a property fails.
"""

from __future__ import annotations

import datetime
import os

from hypothesis import HealthCheck, settings

__all__ = [
    "CRASH_KILLS",
    "FAULT_ROUNDS",
    "FULL",
    "PROFILE_NAME",
    "PROPERTY_EXAMPLES",
    "PROPERTY_SETTINGS",
    "PROXY_CALLS",
    "SEED",
]

FULL = os.environ.get("TEXTSTACK_ADVERSARIAL", "").strip().lower() == "full"
PROFILE_NAME = "full" if FULL else "ci"
SEED = int(os.environ.get("TEXTSTACK_ADVERSARIAL_SEED", "20240917"))

PROPERTY_EXAMPLES = 2000 if FULL else 200
FAULT_ROUNDS = 120 if FULL else 16
CRASH_KILLS = 2000 if FULL else 200
PROXY_CALLS = 600 if FULL else 80

# Generous deadline: one example of a parser is microseconds; a second means a hang.
PROPERTY_SETTINGS = settings(
    max_examples=PROPERTY_EXAMPLES,
    deadline=datetime.timedelta(seconds=2),
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
    print_blob=True,
    database=None,
    derandomize=not FULL,
)
