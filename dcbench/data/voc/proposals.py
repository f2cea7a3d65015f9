"""Object proposals for Fast R-CNN on VOC-layout sets (the `voc-det` task).

Fast R-CNN (Girshick, ICCV 2015; rbgirshick/fast-rcnn) trains and tests on selective-search
boxes that it ships per split as data/selective_search_data/voc_<year>_<split>.mat, read by
lib/datasets/pascal_voc.py: `boxes` is a 1xN cell of (n, 4) arrays, 1-based, columns y1 x1
y2 x2. py-faster-rcnn's lib/datasets/ds_utils.py then drops duplicates (`unique_boxes`) and
tiny boxes (`filter_small_boxes`, min_size 2). Sets without such a file (the embedded
fmnist-voc, a user's own devkit) get OpenCV contrib's selective search in fast mode, the
same algorithm (Uijlings et al., IJCV 2013), cached next to the set.

Every box returned here is float32 x1 y1 x2 y2, 1-based inclusive: the VOC annotation
convention of dcbench/data/voc/devkit.py, so proposals and ground truth compare directly.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from dcbench import step_meter
from dcbench.atomic import atomic_write_bytes
from dcbench.data.voc.devkit import read_ids
from dcbench.errors import DataError
from dcbench.progress import bar

METHOD = "opencv-ss-fast"
MIN_SIZE = 2                   # Fast R-CNN's min_size: narrower or shorter boxes are dropped
DEFAULT_SCALES = (1.0, 2.0)    # search at 1x and 2x, union of the boxes (small scenes)
DEFAULT_MAX_SIDE = 512         # an upscaled search is skipped past this side (full-size VOC)
DEFAULT_MAX_BOXES = 2000       # the first 2000 distinct boxes, as Fast R-CNN's ~2k per image
CHUNK = 256                    # images per partial file: what an interruption can lose
PARALLEL_FROM = 64             # fewer images than this are searched in this process
Sizes = list[tuple[int, int]]  # (width, height) per image, from the annotations


def clean_boxes(boxes: np.ndarray) -> np.ndarray:
    """Drop boxes under MIN_SIZE px wide or high (inclusive sizes, x2 - x1 + 1; ds_utils'
    filter_small_boxes keeps x2 - x1 >= 2 and y2 - y1 > 2), then exact duplicates, keeping
    the order of first occurrence (ds_utils.unique_boxes)."""
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    b = b[(b[:, 2] - b[:, 0] + 1 >= MIN_SIZE) & (b[:, 3] - b[:, 1] + 1 >= MIN_SIZE)]
    _, first = np.unique(b, axis=0, return_index=True)
    return np.ascontiguousarray(b[np.sort(first)])


def read_mat_proposals(path: Path, ids: list[str], sizes: Sizes,
                       split_ids: list[str] | None = None) -> dict[str, np.ndarray]:
    """Fast R-CNN's selective_search_data .mat for one split, as {id: (n, 4) boxes}.

    With `images` in the file boxes are matched by id; without, the file must hold exactly
    the whole split's count, in the split's order (as pascal_voc.py assumes): `split_ids`,
    the split file's ids, when `ids` is a subset of them (max_train), else `ids`."""
    import scipy.io

    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as e:  # noqa: BLE001  (scipy's parser raises any type on a corrupt file)
        first = (str(e).strip().splitlines() or [""])[0][:120]
        raise DataError(f"cannot read {path} as a MATLAB .mat ({type(e).__name__}: {first}); "
                        f"expected Fast R-CNN's selective_search_data file (scipy reads MATLAB "
                        f"v5-v7): replace it, or remove it to compute proposals with OpenCV"
                        ) from None
    if "boxes" not in mat:
        keys = ", ".join(sorted(k for k in mat if not k.startswith("__"))) or "none"
        raise DataError(f"{path} has no 'boxes' variable (it holds: {keys}); expected Fast "
                        f"R-CNN's selective_search_data layout")
    cells = np.asarray(mat["boxes"]).ravel()
    if "images" in mat:
        names = [np.asarray(e).ravel() for e in np.asarray(mat["images"]).ravel()]  # cell/char
        row = {str(v[0]).strip(): n for n, v in enumerate(names) if v.size}
        missing = [i for i in ids if i not in row]
        if missing:
            raise DataError(f"{path} lacks {len(missing)} of the {len(ids)} images of this "
                            f"split (first missing: {missing[0]}); the file must be the one "
                            f"for this split")
        order = [row[i] for i in ids]
    else:
        full = split_ids if split_ids is not None else ids
        if len(cells) != len(full):
            raise DataError(f"{path} holds boxes for {len(cells)} images and no 'images' list, "
                            f"the split lists {len(full)}; the file must be the one for this "
                            f"split")
        row = {i: n for n, i in enumerate(full)}
        if any(i not in row for i in ids):
            raise DataError(f"{path}: the images asked for are not those of its split file; "
                            f"the file must be the one for this split")
        order = [row[i] for i in ids]
    out = {}
    for i, k, (w, h) in zip(ids, order, sizes):
        try:
            raw = np.asarray(cells[k], dtype=np.float32)
        except (TypeError, ValueError):
            raise DataError(f"{path}: boxes of image {i} are not numbers ({cells[k]!r:.40}); "
                            f"expected an (n, 4) array of y1 x1 y2 x2") from None
        raw = raw.reshape(0, 4) if raw.size == 0 else raw
        if raw.ndim != 2 or raw.shape[1] != 4:
            raise DataError(f"{path}: boxes of image {i} have shape {raw.shape}, expected "
                            f"(n, 4) as y1 x1 y2 x2")
        b = raw[:, [1, 0, 3, 2]]
        bad = ~((b[:, 0] >= 1) & (b[:, 1] >= 1) & (b[:, 2] <= w) & (b[:, 3] <= h)
                & (b[:, 0] <= b[:, 2]) & (b[:, 1] <= b[:, 3]))
        if bad.any():
            box = tuple(int(v) if float(v).is_integer() else float(v) for v in b[bad][0])
            raise DataError(f"{path}: box {box} (x1 y1 x2 y2, 1-based) of image {i} lies "
                            f"outside its {w}x{h} image; the file must be the one for this "
                            f"split and these images")
        out[i] = clean_boxes(b)
    return out


def rects_to_boxes(rects: np.ndarray, width: int, height: int,
                   scale: float | tuple[float, float] = 1.0) -> np.ndarray:
    """OpenCV's 0-based (x, y, w, h) rects, found on an image upscaled by `scale`, as 1-based
    inclusive boxes of the original image: the smallest box covering each rect's pixels
    (x1 = x + 1, x2 = x + w at scale 1), clipped to the image."""
    sx, sy = (scale, scale) if np.isscalar(scale) else scale  # type: ignore[misc]
    r = np.asarray(rects, dtype=np.float64).reshape(-1, 4)
    b = np.stack([np.floor(r[:, 0] / sx) + 1, np.floor(r[:, 1] / sy) + 1,
                  np.ceil((r[:, 0] + r[:, 2]) / sx), np.ceil((r[:, 1] + r[:, 3]) / sy)], 1)
    b[:, 0::2] = b[:, 0::2].clip(1, width)
    b[:, 1::2] = b[:, 1::2].clip(1, height)
    return b.astype(np.float32)


def selective_search(image: np.ndarray, scales: tuple[float, ...] = DEFAULT_SCALES,
                     max_boxes: int = DEFAULT_MAX_BOXES,
                     max_side: int = DEFAULT_MAX_SIDE) -> np.ndarray:
    """Selective search (fast mode) on an (H, W, 3) RGB uint8 image: the union over
    `scales` (upscaling tiny scenes finds more of their objects; a scale whose longer side
    would pass `max_side` is skipped, scale 1 if none is left), cleaned, then the first
    `max_boxes` in OpenCV's order."""
    import cv2  # lazily: CLI startup stays fast

    h, w = image.shape[:2]
    bgr = np.ascontiguousarray(image[:, :, ::-1])
    ss = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    found = []
    for s in [s for s in scales if s <= 1 or max(h, w) * s <= max_side] or [1.0]:
        up = bgr if s == 1 else cv2.resize(bgr, (round(w * s), round(h * s)),
                                           interpolation=cv2.INTER_LINEAR)
        ss.setBaseImage(up)
        ss.switchToSelectiveSearchFast()
        _seed_c_rand()
        found.append(rects_to_boxes(ss.process(), w, h, (up.shape[1] / w, up.shape[0] / h)))
    return clean_boxes(np.concatenate(found))[:max_boxes]


def _seed_c_rand() -> None:
    """OpenCV ranks the boxes with C's rand() (the random factor of Uijlings et al.), so the
    order, and what a `max_boxes` cap keeps, would change from call to call: seed it."""
    import ctypes

    try:
        ctypes.CDLL(None).srand(0)
    except (OSError, AttributeError, TypeError):    # no C library handle (Windows): unseeded
        pass


def _image_proposals(root: Path, image_id: str, size: tuple[int, int], params: dict) -> np.ndarray:
    """One image's OpenCV proposals (the unit the cache computes, and tests replace)."""
    from dcbench.data.image_file import open_image

    path = root / "JPEGImages" / f"{image_id}.jpg"
    rgb = np.asarray(open_image(path, "RGB", hint="re-extract the devkit or rebuild the set"))
    if (rgb.shape[1], rgb.shape[0]) != tuple(size):
        raise DataError(f"{path} is {rgb.shape[1]}x{rgb.shape[0]}, its annotation says "
                        f"{size[0]}x{size[1]}; fix the annotation or the image")
    return selective_search(rgb, tuple(params["scales"]), params["max_boxes"], params["max_side"])


def _pack(ids: list[str], boxes: list[np.ndarray], meta: dict) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, ids=np.array(ids, dtype=str), meta=np.array(json.dumps(meta)),
             offsets=np.cumsum([0] + [len(b) for b in boxes]).astype(np.int64),
             boxes=np.concatenate(boxes or [np.zeros((0, 4))]).astype(np.float32))
    return buf.getvalue()


def _unpack(path: Path, ids: list[str], meta: dict) -> list[np.ndarray] | None:
    """The boxes stored at `path`, or None if unreadable or made for other ids/parameters."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if z["ids"].tolist() != ids or json.loads(str(z["meta"])) != meta:
                return None
            b, o = z["boxes"], z["offsets"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    return [b[o[k]:o[k + 1]] for k in range(len(ids))]


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def find_mat(root: Path, split: str, year: str | None = None) -> Path | None:
    """<root or its parent>/selective_search/voc_<year>_<split>.mat; year from VOC<year>."""
    year = year or (m[1] if (m := re.fullmatch(r"VOC(\d{4})", root.name)) else None)
    cands = [d / "selective_search" / f"voc_{year}_{split}.mat" for d in (root, root.parent)]
    return next((c for c in cands if year and c.is_file()), None)


def proposals_for(root: Path, split: str, ids: list[str], sizes: Sizes, source: str = "auto",
                  *, mat: Path | None = None, year: str | None = None,
                  scales: tuple[float, ...] = DEFAULT_SCALES,
                  max_boxes: int = DEFAULT_MAX_BOXES, max_side: int = DEFAULT_MAX_SIDE,
                  set_name: str | None = None, chunk: int = CHUNK,
                  ) -> tuple[dict[str, np.ndarray], dict]:
    """Proposals for the split's images and an info dict for result records.

    source: "mat" (Fast R-CNN's file: `mat` or find_mat's place), "opencv" (selective search,
    cached under <root>/proposals/, else cache_dir()/proposals/<set_name>/), "auto" (the
    file where there is one, else OpenCV). Computing saves every `chunk` images, so an
    interrupted run resumes; a cache made for other ids or parameters is recomputed."""
    if source not in ("auto", "mat", "opencv"):
        raise DataError(f"unknown proposal source '{source}'; use auto, mat or opencv")
    if len(ids) != len(sizes):
        raise ValueError(f"{len(ids)} ids but {len(sizes)} sizes")
    path = Path(mat) if mat is not None else find_mat(root, split, year)
    if source != "opencv" and path is not None:
        if not path.is_file():
            raise DataError(f"proposal file {path} not found; pass Fast R-CNN's "
                            f"voc_<year>_{split}.mat or use source 'opencv'")
        listed = root / "ImageSets" / "Main" / f"{split}.txt"
        split_ids = read_ids(listed) if listed.is_file() else None
        boxes = read_mat_proposals(path, ids, sizes, split_ids)
        return boxes, _info("selective-search-mat", boxes, file=str(path))
    if source == "mat":
        raise DataError(f"no selective search file for {split}: put Fast R-CNN's "
                        f"voc_<year>_{split}.mat in {root / 'selective_search'} or pass its "
                        f"path, or use source 'opencv'")
    import cv2

    params = {"opencv": cv2.__version__, "scales": [float(s) for s in scales],
              "max_side": int(max_side), "max_boxes": int(max_boxes), "min_size": MIN_SIZE,
              "rank_seed": 0}
    wh = [[int(w), int(h)] for w, h in sizes]
    key = hashlib.sha256(json.dumps([METHOD, params, ids, wh]).encode()).hexdigest()[:12]
    name = f"opencv_ss_fast_{split}_{key}.npz"
    from dcbench.data.registry import cache_dir

    folders = [root / "proposals", cache_dir() / "proposals" / (set_name or root.resolve().name)]
    for out in (f / name for f in folders):
        if (boxes := _unpack(out, ids, params)) is not None:
            break
    else:    # not cached: compute where we may write, resuming from finished chunks
        out = next((f for f in folders if _writable(f)), folders[-1]) / name
        boxes = _compute(root, ids, sizes, params, out.parent / f".{out.stem}.part", chunk)
        atomic_write_bytes(out, _pack(ids, boxes, params))
        shutil.rmtree(out.parent / f".{out.stem}.part", ignore_errors=True)
    result = dict(zip(ids, boxes))
    return result, _info(METHOD, result, **params, file=str(out))


def _compute(root: Path, ids: list[str], sizes: Sizes, params: dict, part: Path,
             chunk: int) -> list[np.ndarray]:
    """Chunk by chunk, one image per process in memory at a time; finished chunks are read
    back. The search is sequential per image, so images go to one process per core (in
    order); small jobs (tests, quick subsets) stay in this process."""
    import cv2

    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    processes = min(8, os.cpu_count() or 1)
    pool = None
    if processes > 1 and len(ids) >= PARALLEL_FROM:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_one_thread)
    boxes: list[np.ndarray] = []
    progress = bar("selective search", len(ids), unit="img")
    step_meter.begin("selective search proposals (once, cached)", len(ids), "img",
                     limited=False)
    try:
        for start in range(0, len(ids), chunk):
            cids, csizes = ids[start:start + chunk], sizes[start:start + chunk]
            path = part / f"chunk_{start:07d}_{start + len(cids):07d}.npz"
            got = _unpack(path, cids, params)
            progress.update(len(cids) if got is not None else 0)
            if got is None:
                n = len(cids)
                results = (pool.map(_image_proposals, [root] * n, cids, csizes, [params] * n,
                                    chunksize=8) if pool is not None else
                           map(_image_proposals, [root] * n, cids, csizes, [params] * n))
                got = []
                for b in results:
                    got.append(b)
                    progress.update(1)
                    step_meter.step(1)
                atomic_write_bytes(path, _pack(cids, got, params))
            boxes += got
    finally:
        progress.close()
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        cv2.setNumThreads(threads)
    return boxes


def _one_thread() -> None:
    import cv2

    cv2.setNumThreads(1)


def _info(kind: str, boxes: dict[str, np.ndarray], **extra) -> dict:
    n = [len(b) for b in boxes.values()]
    return {"proposals": kind, **extra, "images": len(n),
            "mean_boxes": round(float(np.mean(n)), 1) if n else 0.0}
