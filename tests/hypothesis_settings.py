"""The hypothesis settings the property tests share: derandomised, few examples (the files
take seconds), and unshrunk failures under bench/mutation.py."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

# bench/mutation.py sets DCBENCH_MUTATION: a failing example is then reported unshrunk, so a
# mutant fails in seconds instead of timing out while hypothesis minimises its example
PHASES = (tuple(Phase) if not os.environ.get("DCBENCH_MUTATION")
          else (Phase.explicit, Phase.reuse, Phase.generate))
FEW = settings(max_examples=40, deadline=None, derandomize=True, database=None, phases=PHASES,
               suppress_health_check=[HealthCheck.too_slow])
SOME = settings(max_examples=15, deadline=None, derandomize=True, database=None, phases=PHASES,
                suppress_health_check=[HealthCheck.too_slow])

seeds = st.integers(0, 2**31 - 1)
