"""The VOC metrics, each as the protocol's own code computes it.

Classification (DeepCluster's eval_voc_classif.py, PROTOCOLS.md): per class, scikit-learn's
`average_precision_score` (non-interpolated AP: the sum over ranks of precision x recall
step, no 11-point sampling) on the rows whose label for that class is not 0 (difficult);
mAP is the mean over the classes that have a positive.

Segmentation (FCN score.py, devkit VOCevalseg.m): one confusion matrix accumulated over the
whole set from the pixels whose ground truth is a class (void 255 dropped); IoU per class
from it, mIoU the mean over the classes that occur in ground truth or prediction.

Detection (py-faster-rcnn lib/datasets/voc_eval.py, devkit VOCevaldet.m): per class, the
detections of the whole set ranked by score, each matched to its image's ground-truth box of
highest IoU (pixel boxes, +1 convention); IoU > 0.5 with an unmatched box is a TP, with a
difficult box ignored, anything else a FP; AP by the 11-point (VOC2007) or the area (VOC2010+)
rule, recall counted against the non-difficult boxes. Where the two sources differ (the devkit
takes IoU >= 0.5 and MATLAB's 0:0.1:1) py-faster-rcnn, Fast R-CNN's evaluator, is followed.
"""

from __future__ import annotations

import numpy as np


def classification_ap(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-class AP (NaN where a class has no positive) from (N, C) scores and (N, C) labels
    in {1, -1, 0}; rows labelled 0 for a class are left out of that class's ranking."""
    if scores.shape != labels.shape:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} differ in shape")
    from sklearn.metrics import average_precision_score  # ~0.5 s: imported where used

    out = np.full(labels.shape[1], np.nan)
    for c in range(labels.shape[1]):
        keep = labels[:, c] != 0
        truth = labels[keep, c] == 1
        if truth.any():
            out[c] = average_precision_score(truth, scores[keep, c])
    return out


def mean_ap(per_class: np.ndarray) -> float:
    """Mean over the classes that have a positive (NaN entries left out)."""
    valid = per_class[~np.isnan(per_class)]
    if valid.size == 0:
        raise ValueError("no class has a positive example: mAP is undefined")
    return float(valid.mean())


def confusion_matrix(gt: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) int64 counts, rows = ground truth, from pixels with
    0 <= gt < n_classes (FCN score.py's fast_hist: void 255 and any other value dropped)."""
    gt = np.asarray(gt).ravel()
    pred = np.asarray(pred).ravel()
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth {gt.shape} and prediction {pred.shape} differ in size")
    keep = (gt >= 0) & (gt < n_classes)
    idx = n_classes * gt[keep].astype(np.int64) + pred[keep].astype(np.int64)
    return np.bincount(idx, minlength=n_classes ** 2).reshape(n_classes, n_classes)


def segmentation_scores(hist: np.ndarray) -> dict[str, object]:
    """From an accumulated confusion matrix: per-class IoU = diag / (row + col - diag)
    (NaN for a class absent from both ground truth and prediction), mIoU = nanmean over the
    classes, pixel accuracy = diag sum / total (devkit VOCevalseg.m, FCN score.py)."""
    hist = np.asarray(hist, dtype=np.float64)
    diag = np.diag(hist)
    union = hist.sum(0) + hist.sum(1) - diag
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, diag / np.where(union > 0, union, 1), np.nan)
    if np.isnan(iou).all():
        raise ValueError("no labelled pixel in the set: mean IoU is undefined")
    return {"miou": float(np.nanmean(iou)), "pixel_acc": float(diag.sum() / hist.sum()),
            "iou": iou}


# ---------------------------------------------------------------------------- Detection


def _iou(box: np.ndarray, gts: np.ndarray) -> np.ndarray:
    """IoU of one (4,) box with (n, 4) boxes; VOC boxes are 1-based inclusive pixel ranges,
    so a side is x2 - x1 + 1 (both sources compute it so, and it moves IoU across 0.5)."""
    iw = np.maximum(np.minimum(box[2], gts[:, 2]) - np.maximum(box[0], gts[:, 0]) + 1.0, 0.0)
    ih = np.maximum(np.minimum(box[3], gts[:, 3]) - np.maximum(box[1], gts[:, 1]) + 1.0, 0.0)
    inter = iw * ih
    area = (box[2] - box[0] + 1.0) * (box[3] - box[1] + 1.0)
    gt_area = (gts[:, 2] - gts[:, 0] + 1.0) * (gts[:, 3] - gts[:, 1] + 1.0)
    return inter / (area + gt_area - inter)


def voc_ap(recall: np.ndarray, precision: np.ndarray, use_07: bool) -> float:
    """AP from a ranked precision/recall curve. use_07: VOC2007's 11-point rule, the mean
    over t of the best precision at recall >= t, t = np.arange(0, 1.1, 0.1) as py-faster-rcnn
    has it (its 0.3, 0.6, 0.7 lie one ulp above, so a recall of exactly 3/5 misses t = 0.6).
    Otherwise VOC2010+'s area under the precision envelope (monotone from the right)."""
    recall = np.asarray(recall, dtype=np.float64)
    precision = np.asarray(precision, dtype=np.float64)
    if recall.ndim != 1 or recall.shape != precision.shape:
        raise ValueError(f"recall {recall.shape} and precision {precision.shape}: "
                         "expected two 1-D arrays of the same length")
    if use_07:  # summed, then / 11: a perfect curve gives exactly 1.0 (not 1 + 1 ulp)
        best = [precision[recall >= t].max() if (recall >= t).any() else 0.0
                for t in np.arange(0.0, 1.1, 0.1)]
        return float(np.sum(best) / 11.0)
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.maximum.accumulate(np.concatenate(([0.0], precision, [0.0]))[::-1])[::-1]
    step = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[step + 1] - mrec[step]) * mpre[step + 1]))


def detection_ap(det_image: np.ndarray, det_score: np.ndarray, det_box: np.ndarray,
                 gt_boxes: list[np.ndarray], gt_difficult: list[np.ndarray],
                 use_07: bool) -> float:
    """One class's AP over the whole set; NaN when it has no non-difficult box (mean_ap then
    leaves it out). Detection d lies in image det_image[d], an index into the per-image
    gt_boxes (n_i, 4) and gt_difficult (n_i,). Ranking is a stable sort on -score, so ties
    keep input order (py-faster-rcnn's default sort leaves tied order unspecified)."""
    det_image = np.asarray(det_image)
    det_score = np.asarray(det_score, dtype=np.float64)
    det_box = np.asarray(det_box, dtype=np.float64)
    n_det, n_img = len(det_image), len(gt_boxes)
    if det_image.ndim != 1 or (n_det and not np.issubdtype(det_image.dtype, np.integer)):
        raise ValueError(f"det_image {det_image.shape} {det_image.dtype}: expected 1-D integers")
    if det_score.shape != (n_det,) or det_box.shape != (n_det, 4):
        raise ValueError(f"det_score {det_score.shape} and det_box {det_box.shape}: expected "
                         f"({n_det},) and ({n_det}, 4) to match det_image")
    if np.isnan(det_score).any():
        raise ValueError("det_score holds NaN: expected every detection to have a score")
    if n_det and (det_image.min() < 0 or det_image.max() >= n_img):
        raise ValueError(f"det_image spans [{det_image.min()}, {det_image.max()}]: expected "
                         f"indices in [0, {n_img}) into the per-image ground truth")
    if len(gt_difficult) != n_img:
        raise ValueError(f"{n_img} gt_boxes entries but {len(gt_difficult)} gt_difficult: "
                         "expected one of each per image")
    boxes = [np.asarray(b, dtype=np.float64) for b in gt_boxes]
    boxes = [b.reshape(0, 4) if b.size == 0 else b for b in boxes]
    hard = [np.asarray(h, dtype=bool).reshape(-1) for h in gt_difficult]
    for i, (b, h) in enumerate(zip(boxes, hard)):
        if b.ndim != 2 or b.shape[1] != 4 or len(h) != len(b):
            raise ValueError(f"image {i}: gt_boxes {b.shape}, gt_difficult {h.shape}: "
                             "expected (n, 4) and (n,)")
    npos = sum(int((~h).sum()) for h in hard)
    if npos == 0:
        return float("nan")
    matched = [np.zeros(len(b), dtype=bool) for b in boxes]
    tp, fp = np.zeros(n_det), np.zeros(n_det)
    for k, d in enumerate(np.argsort(-det_score, kind="stable")):
        i = det_image[d]
        if len(boxes[i]) == 0:
            fp[k] = 1
            continue
        overlap = _iou(det_box[d], boxes[i])
        j = int(np.argmax(overlap))  # first of equal maxima, as both sources
        if overlap[j] <= 0.5:
            fp[k] = 1
        elif hard[i][j]:
            continue  # a hit on a difficult box counts neither way
        elif matched[i][j]:
            fp[k] = 1  # a second detection of one object
        else:
            tp[k], matched[i][j] = 1, True
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return voc_ap(tp / npos, precision, use_07)
