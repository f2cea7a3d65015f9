"""Opening an image file: the one place dcbench decodes images from users' data.

PIL refuses a header claiming more than twice Image.MAX_IMAGE_PIXELS (about 179 million
pixels) with a DecompressionBombError, before allocating anything; left alone that is an
"unexpected" crash, or a traceback when it happens in a DataLoader worker. Here it becomes a
DataError that names the file, so a hostile or corrupt file stops the run in one line.
Undecodable files raise UnreadableImage, which readers that skip and count bad images catch.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager

from PIL import Image

from dcbench.errors import DataError

# what PIL raises on a corrupt or truncated file (plugins differ: IOError, SyntaxError, ...)
DECODE_ERRORS = (OSError, ValueError, EOFError, SyntaxError, IndexError)


class ImageTooLarge(DataError):
    """An image whose header claims more pixels than PIL decodes safely.

    Raised inside a DataLoader worker, torch rebuilds it in the main process as
    `ImageTooLarge("Caught ImageTooLarge in DataLoader worker process 0.\\nOriginal
    Traceback ...")`; the constructor keeps only our own message, so the CLI still prints
    one line."""

    def __init__(self, message: str) -> None:
        if "Original Traceback" in message:
            last = message.rstrip().splitlines()[-1]
            message = last.split(f"{type(self).__name__}: ", 1)[-1]
        super().__init__(message)


class UnreadableImage(DataError):
    """A file PIL cannot decode as an image."""


def too_large(path: str | os.PathLike, error: Exception) -> ImageTooLarge:
    """The error for PIL's DecompressionBombError on `path`: what the header claims."""
    counts = re.findall(r"\((\d+) pixels\)|limit of (\d+) pixels", str(error))
    nums = [int(a or b) for a, b in counts]
    claim = (f"claims {nums[0]:,} pixels, over the {nums[1]:,} that PIL decodes safely"
             if len(nums) == 2 else f"is too large to decode ({error})")
    return ImageTooLarge(f"{path} {claim} (a decompression bomb or a corrupt header); "
                         f"replace it with the original image or remove it from the data")


@contextmanager
def _named_errors(path: str | os.PathLike, hint: str) -> Iterator[None]:
    """PIL's failures as one-line errors naming the file."""
    try:
        yield
    except Image.DecompressionBombError as e:
        raise too_large(path, e) from None
    except FileNotFoundError:
        raise UnreadableImage(f"image missing: {path}; {hint}") from None
    except DECODE_ERRORS as e:
        raise UnreadableImage(f"cannot read {path} as an image ({type(e).__name__}: "
                              f"{str(e)[:120]}); {hint}") from None


def open_image(path: str | os.PathLike, mode: str | None = None,
               hint: str = "replace it with the original file") -> Image.Image:
    """The image at `path`, decoded into memory (converted to `mode` if given).
    ImageTooLarge past PIL's pixel limit; UnreadableImage if it cannot be decoded."""
    with _named_errors(path, hint), open(path, "rb") as f, Image.open(f) as im:
        im.load()
        return im.convert(mode) if mode is not None and im.mode != mode else im.copy()


def image_size(path: str | os.PathLike,
               hint: str = "replace it with the original file") -> tuple[int, int]:
    """(width, height) from the header only; the same errors as `open_image`."""
    with _named_errors(path, hint), Image.open(path) as im:
        return im.size
