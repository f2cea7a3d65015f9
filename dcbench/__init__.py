"""dcbench: a benchmark suite for DeepCluster-style unsupervised visual feature learning."""

__version__ = "0.1.0"
