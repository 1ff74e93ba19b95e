"""Hypothesis profiles for the fuzz tests, chosen by ``HYPOTHESIS_PROFILE``.

* ``ci`` (the default, ``make test``): few examples, no deadline (a loaded 2-core machine is slow, not
  wrong), derandomized so a run is the same on every machine and a failure reproduces anywhere.
* ``fuzz`` (``make fuzz``): ``FUZZ_EXAMPLES`` examples a test (600: minutes rather than seconds),
  random seeds.

Neither writes an example database into the repository: CI keeps none, and ``fuzz`` keeps its
failures under ``.hypothesis/`` (ignored by git), where the next ``make fuzz`` replays them first.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

settings.register_profile(
    "ci", max_examples=40, deadline=None, derandomize=True, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile(
    "fuzz", max_examples=int(os.environ.get("FUZZ_EXAMPLES", "600")), deadline=None, print_blob=True,
    database=DirectoryBasedExampleDatabase(".hypothesis/examples"),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
