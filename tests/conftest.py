"""Shared test setup: hypothesis profiles chosen by HYPOTHESIS_PROFILE.

"fast" (default) keeps the suite quick on every run; "deep" is for a long
fuzzing session (HYPOTHESIS_PROFILE=deep pytest tests/fuzz).
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "fast", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "deep", max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))
