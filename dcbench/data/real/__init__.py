"""Loaders of real datasets in the layouts their users download."""
