"""dcbench: a benchmark suite for DeepCluster-style unsupervised visual feature learning."""

import os

# OpenMP threads that spin-wait after a parallel region steal the cores from everything else
# that runs meanwhile (the other library's pool, DataLoader workers, other processes): on two
# shared cores an eigendecomposition took 26 s instead of 1.1 s. Passive waiting costs at most
# ~10% when dcbench has the machine to itself (bench/bench_threads.py). Set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
