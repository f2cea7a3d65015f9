"""PASCAL VOC: the devkit reader (devkit.py), segmentation masks, Fast R-CNN proposals."""
