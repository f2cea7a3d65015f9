"""Manifests of known checkpoints (manifest.json) and the place their downloads go."""
