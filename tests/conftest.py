"""Test configuration.

Hypothesis runs under the ``ci`` profile by default: no deadline (timing is for
benchmarks, not tests), a fixed example budget and derandomized, so the suite is fast and
gives the same result on every run. ``HYPOTHESIS_PROFILE=thorough python -m pytest``
searches harder (random, 10x the examples) when you change a formula.
"""

import os

import matplotlib

matplotlib.use("Agg")  # plotting tests render off-screen

from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
    "ci",
    deadline=None,
    max_examples=60,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough",
    deadline=None,
    max_examples=600,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
