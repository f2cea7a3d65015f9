"""Object proposals for voc-det: Fast R-CNN's .mat files, OpenCV selective search, the cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from dcbench.data.voc import proposals as vp
from dcbench.errors import DataError

IDS = ["000005", "000007", "000009"]
SIZES = [(60, 40), (50, 30), (40, 45)]       # (width, height), non-square
# Our convention (x1 y1 x2 y2, 1-based); the file stores y1 x1 y2 x2.
OURS = [np.array([[5, 3, 50, 20], [2, 10, 30, 38]], np.float32),
        np.array([[1, 1, 50, 30]], np.float32),
        np.array([[7, 2, 12, 44], [3, 4, 9, 40], [1, 1, 40, 45]], np.float32)]


def _cell(arrays: list[np.ndarray]) -> np.ndarray:
    out = np.empty((1, len(arrays)), dtype=object)
    for k, a in enumerate(arrays):
        out[0, k] = np.asarray(a, dtype=np.float64)
    return out


def _write_mat(path: Path, ours: list[np.ndarray], images: list[str] | None = None,
               chars: bool = False) -> Path:
    data = {"boxes": _cell([b[:, [1, 0, 3, 2]] for b in ours])}
    if images is not None and chars:        # a MATLAB char matrix rather than a cell
        data["images"] = np.array(images)
    elif images is not None:
        cell = np.empty((len(images), 1), dtype=object)
        for k, i in enumerate(images):
            cell[k, 0] = i
        data["images"] = cell
    scipy.io.savemat(path, data)
    return path


def test_mat_round_trip_in_split_order(tmp_path: Path) -> None:
    got = vp.read_mat_proposals(_write_mat(tmp_path / "p.mat", OURS), IDS, SIZES)
    assert list(got) == IDS
    for i, want in zip(IDS, OURS):
        assert got[i].dtype == np.float32
        np.testing.assert_array_equal(got[i], want)   # a swapped column order differs


@pytest.mark.parametrize("chars", [False, True])
def test_mat_matched_by_images_not_by_position(tmp_path: Path, chars: bool) -> None:
    order = [2, 0, 1]
    path = _write_mat(tmp_path / "p.mat", [OURS[k] for k in order], [IDS[k] for k in order],
                      chars)
    got = vp.read_mat_proposals(path, IDS, SIZES)
    for i, want in zip(IDS, OURS):
        np.testing.assert_array_equal(got[i], want)


def test_mat_missing_images_named(tmp_path: Path) -> None:
    path = _write_mat(tmp_path / "p.mat", OURS[:2], IDS[:2])
    with pytest.raises(DataError, match=r"lacks 1 of the 3 images .*first missing: 000009"):
        vp.read_mat_proposals(path, IDS, SIZES)
    path = _write_mat(tmp_path / "q.mat", OURS[:2])
    with pytest.raises(DataError, match=r"boxes for 2 images .* split lists 3"):
        vp.read_mat_proposals(path, IDS, SIZES)


def test_mat_box_outside_image(tmp_path: Path) -> None:
    bad = [OURS[0], np.array([[1, 1, 51, 30]], np.float32), OURS[2]]   # x2 51 > width 50
    with pytest.raises(DataError, match=r"box \(1, 1, 51, 30\) .*image 000007 .*50x30"):
        vp.read_mat_proposals(_write_mat(tmp_path / "p.mat", bad), IDS, SIZES)


def test_mat_without_boxes(tmp_path: Path) -> None:
    scipy.io.savemat(tmp_path / "p.mat", {"all_boxes": np.zeros((1, 4))})
    with pytest.raises(DataError, match=r"no 'boxes' variable \(it holds: all_boxes\)"):
        vp.read_mat_proposals(tmp_path / "p.mat", IDS, SIZES)


def test_tiny_and_duplicate_boxes_dropped(tmp_path: Path) -> None:
    raw = np.array([[5, 5, 20, 20],     # kept
                    [5, 5, 5, 20],      # 1 px wide: dropped
                    [5, 5, 6, 20],      # 2 px wide: kept
                    [3, 7, 30, 7],      # 1 px high: dropped
                    [5, 5, 20, 20],     # duplicate of the first: dropped
                    [1, 1, 10, 10]], np.float32)
    want = raw[[0, 2, 5]]
    np.testing.assert_array_equal(vp.clean_boxes(raw), want)
    got = vp.read_mat_proposals(_write_mat(tmp_path / "p.mat", [raw]), ["a"], [(40, 40)])
    np.testing.assert_array_equal(got["a"], want)


def test_opencv_rects_to_boxes() -> None:
    rects = np.array([[3, 5, 10, 6]])                       # x y w h, 0-based
    np.testing.assert_array_equal(vp.rects_to_boxes(rects, 64, 48), [[4, 6, 13, 11]])
    # found on a 2x image: pixels 3..12 x 5..10 there cover 1..6 x 2..5 (0-based) here
    np.testing.assert_array_equal(vp.rects_to_boxes(rects, 64, 48, 2.0), [[2, 3, 7, 6]])
    np.testing.assert_array_equal(vp.rects_to_boxes(np.array([[0, 0, 20, 9]]), 8, 6),
                                  [[1, 1, 8, 6]])          # clipped to the image


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    iw = np.clip(np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0]) + 1, 0, None)
    ih = np.clip(np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1]) + 1, 0, None)
    inter = iw * ih
    area = (a[2] - a[0] + 1) * (a[3] - a[1] + 1)
    return inter / (area + (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1) - inter)


RECTS = [np.array([5, 6, 24, 29]), np.array([35, 10, 58, 40])]     # 1-based inclusive


def _scene(w: int = 64, h: int = 48) -> np.ndarray:
    img = np.full((h, w, 3), 128, np.uint8)
    for (x1, y1, x2, y2), colour in zip(RECTS, ((200, 30, 30), (30, 40, 200))):
        img[y1 - 1:y2, x1 - 1:x2] = colour
    return img


def test_selective_search_finds_the_rectangles() -> None:
    boxes = vp.selective_search(_scene())
    assert boxes.dtype == np.float32 and boxes.shape[1] == 4
    assert (boxes[:, :2] >= 1).all() and (boxes[:, 2] <= 64).all() and (boxes[:, 3] <= 48).all()
    for r in RECTS:
        assert _iou(r, boxes).max() >= 0.7


def test_selective_search_is_repeatable() -> None:
    # OpenCV ranks boxes with a random factor; unseeded, two calls order them differently
    # (and a max_boxes cap would keep different boxes)
    scene = np.roll(_scene(), 5, axis=0)
    a, b = vp.selective_search(scene), vp.selective_search(scene)
    assert len(a) > 10 and np.array_equal(a, b)
    assert np.array_equal(vp.selective_search(scene, max_boxes=7), a[:7])


@pytest.fixture
def devkit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Five tiny scenes in the devkit layout; the fallback cache inside tmp_path."""
    monkeypatch.setenv("DCBENCH_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "VOC2007"
    (root / "JPEGImages").mkdir(parents=True)
    for k in range(5):
        Image.fromarray(np.roll(_scene(), 3 * k, axis=1)).save(root / "JPEGImages" / f"{k:06d}.jpg")
    return root


DK_IDS = [f"{k:06d}" for k in range(5)]
DK_SIZES = [(64, 48)] * 5


def _fake(calls: list[str], fail_at: int | None = None):
    def compute(root: Path, image_id: str, size: tuple[int, int], params: dict) -> np.ndarray:
        if fail_at is not None and len(calls) == fail_at:
            raise KeyboardInterrupt
        calls.append(image_id)
        k = int(image_id)
        return np.array([[k + 1, 1, k + 3, 4]], np.float32)
    return compute


def test_process_pool_gives_the_in_process_boxes(devkit: Path, monkeypatch) -> None:
    monkeypatch.setattr(vp, "PARALLEL_FROM", 1)
    monkeypatch.setattr(vp.os, "cpu_count", lambda: 2)
    pooled, _ = vp.proposals_for(devkit, "val", DK_IDS, DK_SIZES)
    for i, s in zip(DK_IDS, DK_SIZES):
        own = vp._image_proposals(devkit, i, s, {"scales": list(vp.DEFAULT_SCALES),
                                                 "max_boxes": 2000, "max_side": 512})
        assert np.array_equal(pooled[i], own)


def test_cache_reused_and_recomputed_for_other_ids(devkit: Path, monkeypatch) -> None:
    boxes, info = vp.proposals_for(devkit, "val", DK_IDS, DK_SIZES)
    assert info["proposals"] == "opencv-ss-fast" and info["images"] == 5
    assert Path(info["file"]).parent == devkit / "proposals"
    assert info["scales"] == list(vp.DEFAULT_SCALES) and info["max_boxes"] == 2000

    def boom(*a, **k):
        raise AssertionError("recomputed a cached set")
    monkeypatch.setattr(vp, "_image_proposals", boom)
    again, info2 = vp.proposals_for(devkit, "val", DK_IDS, DK_SIZES)
    assert info2 == info
    for i in DK_IDS:
        np.testing.assert_array_equal(again[i], boxes[i])

    calls: list[str] = []
    monkeypatch.setattr(vp, "_image_proposals", _fake(calls))
    other, info3 = vp.proposals_for(devkit, "val", DK_IDS[1:], DK_SIZES[1:])
    assert calls == DK_IDS[1:] and info3["file"] != info["file"]
    np.testing.assert_array_equal(other["000003"], [[4, 1, 6, 4]])


def test_cache_with_other_ids_inside_is_recomputed(devkit: Path, monkeypatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(vp, "_image_proposals", _fake(calls))
    _, info = vp.proposals_for(devkit, "val", DK_IDS, DK_SIZES)
    params = {k: info[k] for k in ("opencv", "scales", "max_side", "max_boxes", "min_size")}
    stale = [np.zeros((1, 4), np.float32)] * 5
    Path(info["file"]).write_bytes(vp._pack(["x"] * 5, stale, params))
    calls.clear()
    boxes, _ = vp.proposals_for(devkit, "val", DK_IDS, DK_SIZES)
    assert calls == DK_IDS
    np.testing.assert_array_equal(boxes["000002"], [[3, 1, 5, 4]])


def test_interrupted_run_resumes_after_finished_chunks(devkit: Path, monkeypatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(vp, "_image_proposals", _fake(calls, fail_at=3))
    with pytest.raises(KeyboardInterrupt):
        vp.proposals_for(devkit, "val", DK_IDS, DK_SIZES, chunk=2)
    assert calls == DK_IDS[:3]          # the third image was in flight: its chunk is lost
    calls.clear()
    monkeypatch.setattr(vp, "_image_proposals", _fake(calls))
    boxes, info = vp.proposals_for(devkit, "val", DK_IDS, DK_SIZES, chunk=2)
    assert calls == DK_IDS[2:]
    np.testing.assert_array_equal(boxes["000000"], [[1, 1, 3, 4]])
    assert [p.name for p in (devkit / "proposals").iterdir()] == [Path(info["file"]).name]


def test_read_only_set_caches_under_cache_dir(devkit: Path, monkeypatch) -> None:
    monkeypatch.setattr(vp, "_writable", lambda f: f != devkit / "proposals")
    monkeypatch.setattr(vp, "_image_proposals", _fake([]))
    _, info = vp.proposals_for(devkit, "test", DK_IDS, DK_SIZES, set_name="mine")
    assert Path(info["file"]).parent == devkit.parent / "cache" / "proposals" / "mine"


def test_mat_next_to_the_set_preferred(devkit: Path, monkeypatch) -> None:
    monkeypatch.setattr(vp, "_image_proposals", _fake([], fail_at=0))
    with pytest.raises(DataError, match="no selective search file for val"):
        vp.proposals_for(devkit, "val", DK_IDS[:3], SIZES, source="mat")
    (devkit / "selective_search").mkdir()
    path = _write_mat(devkit / "selective_search" / "voc_2007_val.mat", OURS, DK_IDS[:3])
    boxes, info = vp.proposals_for(devkit, "val", DK_IDS[:3], SIZES)
    assert info == {"proposals": "selective-search-mat", "file": str(path), "images": 3,
                    "mean_boxes": 2.0}
    np.testing.assert_array_equal(boxes["000002"], OURS[2])


def test_image_size_must_match_annotation(devkit: Path) -> None:
    with pytest.raises(DataError, match=r"000000.jpg is 64x48, its annotation says 48x64"):
        vp.proposals_for(devkit, "val", DK_IDS[:1], [(48, 64)])
