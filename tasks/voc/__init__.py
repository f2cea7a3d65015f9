"""The PASCAL VOC tasks: classification, segmentation (and detection), on one loader and
one metrics module."""

from . import cls, det, seg  # noqa: F401  (register voc-cls, voc-det, voc-seg)
