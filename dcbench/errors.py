"""The one exception type the CLI turns into a one-line message and a non-zero exit.

Library code raises `DcbenchError` (or a subclass) for anything the user can fix: bad
paths, wrong names, incompatible checkpoints. The message must say what is wrong and how
to fix it, in one line.
"""


class DcbenchError(Exception):
    """A user-facing error: printed as one line by the CLI, exit status 2."""


class DataError(DcbenchError):
    """A dataset is missing, malformed or unknown."""


class CheckpointError(DcbenchError):
    """A checkpoint file or spec cannot be read or does not fit the model."""
