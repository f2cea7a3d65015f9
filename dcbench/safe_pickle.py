"""Read a pickle that may come from anywhere, without letting it run code.

`pickle.load` calls whatever callable the file names, so a hostile ground-truth file (the
revisited Oxford/Paris `gnd_r*.pkl`) could run a shell command while returning genuine data.
`load_plain` unpickles with a restricted `find_class`: only numpy's array and scalar
constructors (the real gnd files hold numpy arrays) may be named; dicts, lists, tuples,
strings and numbers are built by pickle opcodes and need no callable. Object arrays are
refused after loading, and the file's size is capped before reading, so a file cannot
exhaust memory either. Every refusal is a one-line DataError naming the file.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from dcbench.errors import DataError

# the callables a pickle of plain data and numeric numpy arrays needs (numpy >= 2 pickles
# under numpy._core, older files name numpy.core)
_ALLOWED = {
    (mod, name)
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray")
    for name in ("_reconstruct", "scalar")
} | {("numpy", "ndarray"), ("numpy", "dtype"), ("builtins", "set"),
     ("builtins", "frozenset"), ("builtins", "complex"), ("_codecs", "encode")}
MAX_BYTES = 256 * 2**20          # the real gnd_r*.pkl files are under 1 MB
MAX_ITEMS = 50_000_000           # containers' elements visited when checking for objects


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it names {module}.{name}, which a file of plain data "
                                     f"and numeric arrays never does")


def _check_plain(obj: Any, path: Path) -> None:
    """Refuse object arrays (their elements were unpickled safely, but nothing dcbench reads
    is one) and structures too large to walk."""
    stack, seen = [obj], 0
    while stack:
        x = stack.pop()
        seen += 1
        if seen > MAX_ITEMS:
            raise DataError(f"{path} holds more than {MAX_ITEMS:,} items; not a ground-truth "
                            f"file: replace it with the original")
        if isinstance(x, np.ndarray):
            if x.dtype.hasobject or x.dtype.kind not in "biufc?U":
                raise DataError(f"{path} holds a numpy array of dtype {x.dtype}; expected "
                                f"numeric arrays only: replace it with the original file")
        elif isinstance(x, dict):
            stack.extend(x.keys())
            stack.extend(x.values())
        elif isinstance(x, (list, tuple, set, frozenset)):
            stack.extend(x)


def load_plain(path: str | Path, what: str = "file") -> Any:
    """Unpickle `path`, allowing only plain containers, strings, numbers and numeric numpy
    arrays; anything else (a callable the file names, an object array, a file over
    MAX_BYTES) is a DataError naming the file. `what` says what the file should be."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_BYTES:
            raise DataError(f"{p} is {size / 2**20:.0f} MB, over the {MAX_BYTES // 2**20} MB "
                            f"a {what} can be; replace it with the original file")
        data = p.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {p} ({e.strerror or type(e).__name__}); check the "
                        f"path and its permissions") from None
    try:
        obj = _PlainUnpickler(io.BytesIO(data)).load()
    except pickle.UnpicklingError as e:
        raise DataError(f"{p} is refused: {e}; dcbench reads a {what} as plain data only "
                        f"(no code runs): replace it with the original file") from None
    except Exception as e:  # truncated or garbage bytes raise many types
        raise DataError(f"{p} is not a readable pickle ({type(e).__name__}); expected a "
                        f"{what}: replace it with the original file") from None
    _check_plain(obj, p)
    return obj
