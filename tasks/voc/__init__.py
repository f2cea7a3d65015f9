"""The PASCAL VOC tasks (classification now; detection and segmentation stand on the same
loader and metrics module)."""

from . import cls  # noqa: F401  (registers voc-cls)
