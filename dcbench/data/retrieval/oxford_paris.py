"""Oxford5k / Paris6k instance retrieval (paper Table 5), in the layouts they ship in.

Original layout (what DeepCluster's eval_retrieval.py reads):

    <root>/jpg/<image>.jpg                    every database image, query images included
                                              (Paris: flatten paris_1/ and paris_2/ into jpg/)
    <root>/gt/<query>_query.txt               "<image> x1 y1 x2 y2" (Oxford: "oxc1_<image> ...")
    <root>/gt/<query>_{good,ok,junk}.txt      one image name per line, no .jpg
                                              (DC's lab/ folder is read where gt/ is absent)

Revisited layout (Radenovic et al.): <root>/gnd_roxford5k.pkl or gnd_rparis6k.pkl, a dict of
`imlist` (database), `qimlist` (query images, not in imlist) and `gnd`, per query
{'bbx': [x1, y1, x2, y2], 'easy': [...], 'hard': [...], 'junk': [...]} indexing imlist.

Everything is checked up front and the first problem named in one line: a missing gt file,
a query image missing from jpg/, a query box outside its image. The 20 corrupt Paris images
DC blacklists are left out of the database, as DC does. The embedded fmnist-oxford and
fmnist-paris (dcbench/data/embedded/retrieval_builder.py) are written in both layouts.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from dcbench.data.real import fashion_mnist
from dcbench.data.registry import ensure_root, get_dataset_spec
from dcbench.data.retrieval.images import RetrievalImages
from dcbench.data.spec import DatasetSpec, ValidationReport
from dcbench.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from dcbench.errors import DataError
from dcbench.safe_pickle import load_plain

if TYPE_CHECKING:
    from torch.utils.data import Dataset

GT_KINDS = ("query", "good", "ok", "junk")
_GT_FILE = re.compile(r"^(?P<q>.+)_(?P<kind>query|good|ok|junk)\.txt$")
BOX_SLACK = 1.0         # pixels a box may overhang its image (float boxes, rounding)
# Unreadable in the Paris6k archives; DC (eval_retrieval.py) leaves them out of the database.
PARIS_CORRUPT = frozenset(
    "paris_louvre_000136 paris_louvre_000146 paris_moulinrouge_000422 "
    "paris_museedorsay_001059 paris_notredame_000188 paris_pantheon_000284 "
    "paris_pantheon_000960 paris_pantheon_000974 paris_pompidou_000195 paris_pompidou_000196 "
    "paris_pompidou_000201 paris_pompidou_000467 paris_pompidou_000640 "
    "paris_sacrecoeur_000299 paris_sacrecoeur_000330 paris_sacrecoeur_000353 "
    "paris_triomphe_000662 paris_triomphe_000833 paris_triomphe_000863 "
    "paris_triomphe_000867".split())
# Longest image side for feature extraction: PROTOCOLS' 1024 for the real sets; the embedded
# scenes (64-96 px) are brought to their largest size.
MAX_SIDE = {"oxford5k": 1024, "paris6k": 1024, "fmnist-oxford": 96, "fmnist-oxford-quick": 96,
            "fmnist-paris": 96, "fmnist-paris-quick": 96}


@dataclass
class Revisited:
    """The revisited ground truth: indices into `images` (imlist), queries not among them."""

    path: Path
    images: list[str]
    query_images: list[str]
    query_boxes: np.ndarray            # (Q, 4) float64 x1 y1 x2 y2, original pixels
    easy: list[np.ndarray]
    hard: list[np.ndarray]
    junk: list[np.ndarray]


@dataclass
class RetrievalSet:
    """One Oxford/Paris-layout set, validated. Indices are int64 arrays into `images`."""

    root: Path
    images: list[str]                  # database: jpg/ names sorted, query images included
    queries: list[str]                 # query names (gt file prefixes), sorted
    query_images: list[str]
    query_boxes: np.ndarray            # (Q, 4) float64 x1 y1 x2 y2, original pixels
    good: list[np.ndarray]
    ok: list[np.ndarray]
    junk: list[np.ndarray]
    revisited: Revisited | None = None

    def path(self, name: str) -> Path:
        return self.root / "jpg" / f"{name}.jpg"

    @property
    def query_index(self) -> np.ndarray:
        """Where each query image sits in `images` (DC keeps queries in the database)."""
        row = {n: i for i, n in enumerate(self.images)}
        return np.array([row[q] for q in self.query_images], dtype=np.int64)


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the header only; a header past PIL's pixel limit (a
    decompression bomb) is named, as everywhere dcbench opens images (data/image_file.py)."""
    from dcbench.data.image_file import too_large

    try:
        with Image.open(path) as im:
            return im.size
    except Image.DecompressionBombError as e:
        raise too_large(path, e) from None
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read query image {path} ({type(e).__name__}); replace it "
                        f"with the original file") from None


def _check_box(box: np.ndarray, path: Path, where: str) -> None:
    w, h = _image_size(path)
    x1, y1, x2, y2 = (float(v) for v in box)
    s = BOX_SLACK
    if not (-s <= x1 < x2 <= w + s and -s <= y1 < y2 <= h + s):
        raise DataError(f"{where}: query box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) is empty or "
                        f"lies outside its {w}x{h} image {path} (expected 0 <= x1 < x2 <= width, "
                        f"0 <= y1 < y2 <= height); fix the box or restore the image")


def _gt_dir(root: Path) -> Path:
    for name in ("gt", "lab"):
        if (root / name).is_dir():
            return root / name
    raise DataError(f"missing folder {root / 'gt'} (expected <root>/gt/<query>_query.txt, "
                    f"_good.txt, _ok.txt, _junk.txt: the ground-truth archive, unpacked)")


def _read_text(path: Path) -> str:
    """A ground-truth text file; bytes that are not UTF-8 are named with their line."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise DataError(f"{path}:{line} is not UTF-8 text (byte 0x{data[e.start]:02x}); the "
                        f"ground-truth files are plain text: fix that line or restore the "
                        f"file from the archive") from None


def _names(path: Path, known: set[str]) -> list[str]:
    names = [ln.strip() for ln in _read_text(path).splitlines() if ln.strip()]
    for n in names:
        if n not in known and n not in PARIS_CORRUPT:
            raise DataError(f"{path} lists image {n}, which is not in {path.parent.parent}/jpg/"
                            f"; restore the image or the ground-truth file")
    return [n for n in names if n in known]


def _indices(names: list[str], row: dict[str, int]) -> np.ndarray:
    return np.array(sorted(row[n] for n in set(names)), dtype=np.int64)


def _name_list(value: object, path: Path, field: str) -> list[str]:
    """imlist / qimlist: a list of distinct image names."""
    if not isinstance(value, (list, tuple)) or not all(isinstance(n, str) for n in value):
        raise DataError(f"{path}: '{field}' is a {type(value).__name__}, expected a list of "
                        f"image names (strings): replace the file with the original")
    seen: set[str] = set()
    for n in value:
        if n in seen:
            raise DataError(f"{path}: '{field}' names image {n} twice; expected each image "
                            f"once: replace the file with the original")
        seen.add(n)
    return list(value)


def _index_list(value: object, path: Path, where: str, n_images: int) -> np.ndarray:
    """A gnd entry's easy / hard / junk: whole numbers indexing imlist (0.5 is not 0)."""
    arr = np.asarray(value if value is not None else [])
    if arr.dtype.kind == "f" and arr.size and np.all(np.isfinite(arr)) \
            and np.all(arr == np.round(arr)):
        arr = arr.astype(np.int64)           # 3.0 from a float array: the index 3
    if arr.size and arr.dtype.kind not in "iu":
        shown = next((v for v in arr.reshape(-1).tolist()
                      if not (isinstance(v, int) and not isinstance(v, bool))), arr.dtype)
        raise DataError(f"{where} holds {shown!r}; expected whole-number indices into imlist "
                        f"(0..{n_images - 1}): replace the file with the original")
    idx = np.unique(arr.astype(np.int64).reshape(-1))
    if idx.size and (idx[0] < 0 or idx[-1] >= n_images):
        bad = int(idx[0]) if idx[0] < 0 else int(idx[-1])
        raise DataError(f"{where} index {bad} is outside imlist (0..{n_images - 1})")
    return idx


def _load_revisited(root: Path, jpg: set[str]) -> Revisited | None:
    found = sorted(root.glob("gnd_*.pkl"))
    if not found:
        return None
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise DataError(f"{root} holds {len(found)} revisited files ({names}); keep the one "
                        f"of this set (gnd_roxford5k.pkl or gnd_rparis6k.pkl)")
    path = found[0]
    cfg = load_plain(path, "revisited ground truth (gnd_r*.pkl)")
    if not isinstance(cfg, dict) or not {"imlist", "qimlist", "gnd"} <= set(cfg):
        got = (f"a dict with keys {sorted(map(str, cfg))}" if isinstance(cfg, dict)
               else f"a {type(cfg).__name__}")
        raise DataError(f"{path} holds {got}; expected a dict with imlist, qimlist and gnd: "
                        f"replace it with the original file")
    images = _name_list(cfg["imlist"], path, "imlist")
    qimages = _name_list(cfg["qimlist"], path, "qimlist")
    gnd = cfg["gnd"]
    if not isinstance(gnd, (list, tuple)):
        raise DataError(f"{path}: 'gnd' is a {type(gnd).__name__}, expected a list of one "
                        f"dict per query: replace the file with the original")
    if len(gnd) != len(qimages):
        raise DataError(f"{path}: {len(gnd)} gnd entries for {len(qimages)} qimlist images")
    for n in images + qimages:
        if n not in jpg:
            raise DataError(f"{path} names image {n}, missing from {root / 'jpg'}/; restore "
                            f"the image")
    boxes, lists = [], {"easy": [], "hard": [], "junk": []}
    for q, (name, g) in enumerate(zip(qimages, gnd)):
        where = f"{path}: gnd[{q}] ({name})"
        if not isinstance(g, dict):
            raise DataError(f"{where} is a {type(g).__name__}, expected a dict with bbx, "
                            f"easy, hard and junk: replace the file with the original")
        try:
            box = np.asarray(g.get("bbx", []), dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            box = np.zeros(0)
        if box.shape != (4,) or not np.all(np.isfinite(box)):
            raise DataError(f"{where} 'bbx' is not 4 finite numbers (x1 y1 x2 y2)")
        _check_box(box, root / "jpg" / f"{name}.jpg", where)
        boxes.append(box)
        for kind, out in lists.items():
            out.append(_index_list(g.get(kind), path, f"{where} '{kind}'", len(images)))
        if not (lists["easy"][-1].size or lists["hard"][-1].size):
            raise DataError(f"{where} has no easy and no hard positive; every query of the "
                            f"revisited protocol has some (its mAPs would be dropped): "
                            f"replace the file with the original")
    return Revisited(path, images, qimages, np.array(boxes).reshape(-1, 4), lists["easy"],
                     lists["hard"], lists["junk"])


def load_retrieval_set(root: Path) -> RetrievalSet:
    """Read and check a set in the original layout (and its revisited .pkl where present)."""
    root = Path(root)
    jpg_dir = root / "jpg"
    if not jpg_dir.is_dir():
        raise DataError(f"missing folder {jpg_dir} (expected <root>/jpg/<image>.jpg and "
                        f"<root>/gt/<query>_{{query,good,ok,junk}}.txt)")
    jpg = {e.name[:-4] for e in os.scandir(jpg_dir) if e.name.endswith(".jpg")}
    if not jpg:
        raise DataError(f"{jpg_dir} holds no .jpg images")
    images = sorted(jpg - PARIS_CORRUPT)
    row = {n: i for i, n in enumerate(images)}
    gt = _gt_dir(root)
    present: dict[str, set[str]] = {}
    for p in os.scandir(gt):
        if m := _GT_FILE.match(p.name):
            present.setdefault(m["q"], set()).add(m["kind"])
    if not present:
        raise DataError(f"{gt} holds no <query>_query.txt files (nor _good/_ok/_junk)")
    queries = sorted(present)
    for q in queries:
        for kind in GT_KINDS:
            if kind not in present[q]:
                raise DataError(f"gt file missing: {gt / f'{q}_{kind}.txt'} (each query needs "
                                f"_query, _good, _ok and _junk .txt); restore it from the "
                                f"ground-truth archive or rebuild the set")
    qimages, boxes, lists = [], [], {"good": [], "ok": [], "junk": []}
    for q in queries:
        qfile = gt / f"{q}_query.txt"
        parts = _read_text(qfile).split()
        if len(parts) != 5:
            raise DataError(f"{qfile}: expected one line '<image> x1 y1 x2 y2', got "
                            f"{len(parts)} fields")
        name = parts[0][5:] if parts[0].startswith("oxc1_") else parts[0]
        if name not in row:
            raise DataError(f"query image {name} of {qfile} is missing from the database "
                            f"({jpg_dir / (name + '.jpg')} not found); restore the image")
        try:
            box = np.array([float(v) for v in parts[1:]], dtype=np.float64)
        except ValueError:
            raise DataError(f"{qfile}: box '{' '.join(parts[1:])}' is not 4 numbers") from None
        _check_box(box, jpg_dir / f"{name}.jpg", str(qfile))
        qimages.append(name)
        boxes.append(box)
    for q in queries:            # after every query file: a missing query image is named as such
        for kind, out in lists.items():
            out.append(_indices(_names(gt / f"{q}_{kind}.txt", jpg), row))
    return RetrievalSet(root, images, queries, qimages, np.array(boxes).reshape(-1, 4),
                        lists["good"], lists["ok"], lists["junk"], _load_revisited(root, jpg))


def validate(root: Path) -> ValidationReport:
    rs = load_retrieval_set(root)
    splits = {"database": len(rs.images), "query": len(rs.queries)}
    notes = [f"{sum(len(g) + len(o) for g, o in zip(rs.good, rs.ok))} positives (good + ok)"]
    if rs.revisited is not None:
        r = rs.revisited
        splits.update({"revisited-database": len(r.images),
                       "revisited-query": len(r.query_images)})
        notes.append(f"revisited: {r.path.name}")
    return ValidationReport(root.name, root, splits, notes=notes)


def build_retrieval(name: str, data_root: str | None = None) -> RetrievalSet:
    """A registered retrieval set, found (or, embedded, built) and validated."""
    spec = get_dataset_spec(name)
    if name not in MAX_SIDE:
        raise DataError(f"dataset '{name}' is not a retrieval set; retrieval sets: "
                        f"{', '.join(sorted(MAX_SIDE))}")
    path = ensure_root(name, None, data_root)
    spec.validate(path)
    return load_retrieval_set(path)


SPLITS = ("database", "query", "revisited-database", "revisited-query")


def retrieval_images(rs: RetrievalSet, split: str, max_side: int | None = None,
                     transform: Callable | None = None,
                     crop_first: bool | None = None) -> RetrievalImages:
    """'database' / 'query' (original protocol: queries cropped after resizing, as DC) or
    'revisited-database' / 'revisited-query' (queries cropped first, as RO; `crop_first`
    overrides)."""
    base, _, kind = split.rpartition("-")
    if base not in ("", "revisited") or kind not in ("database", "query"):
        raise DataError(f"no split '{split}' (database, query, revisited-database, "
                        f"revisited-query)")
    gnd = rs.revisited if base else rs
    if gnd is None:
        raise DataError(f"{rs.root} has no gnd_*.pkl: split '{split}' needs the revisited "
                        f"ground truth (gnd_roxford5k.pkl / gnd_rparis6k.pkl)")
    if kind == "database":
        return RetrievalImages([rs.path(n) for n in gnd.images], None, max_side, transform)
    return RetrievalImages([rs.path(n) for n in gnd.query_images], gnd.query_boxes, max_side,
                           transform, bool(base) if crop_first is None else crop_first)


# this module's datasets, registered by dcbench/data/catalog.py
SPECS: list[DatasetSpec] = []


def _register(name: str, description: str, check: Callable[[Path], None] | None = None,
              **kw) -> None:
    def check_then_validate(root: Path) -> ValidationReport:
        if check is not None:
            check(root)
        return validate(root)

    def build(root: Path, split: str, transform: Callable | None) -> Dataset:
        return retrieval_images(load_retrieval_set(root), split, MAX_SIDE[name], transform)

    SPECS.append(DatasetSpec(name=name, description=description, splits=SPLITS,
                                 labelled=False, validate=check_then_validate, build=build, **kw))


for _name, _what in (("oxford5k", "Oxford5k (oxbuild_images, gt_files_170407)"),
                     ("paris6k", "Paris6k (paris_1/2 flattened, paris_120310)")):
    _register(_name, f"{_what}: <root>/jpg/*.jpg and gt/<query>_{{query,good,ok,junk}}.txt, "
              f"optional revisited gnd_r*.pkl", size="large", native=224, mean=IMAGENET_MEAN,
              std=IMAGENET_STD, needs_root_hint=f" (holding {_name}/jpg and {_name}/gt)")


def _fmnist(name: str, quick: bool) -> Callable[[Path], Path]:
    def build(target: Path) -> Path:
        from dcbench.data.embedded.retrieval_builder import build_fmnist_retrieval

        return build_fmnist_retrieval(target, name, quick=quick)
    return build


def _current_build(root: Path) -> None:
    from dcbench.data.embedded.retrieval_builder import check_current

    check_current(root)


# The embedded sets (dcbench/data/embedded/retrieval_builder.py), built on first use;
# Fashion-MNIST's statistics, as their trunks were trained on them.
for _base, _src in (("fmnist-oxford", "train"), ("fmnist-paris", "test")):
    for _name, _quick in ((_base, False), (_base + "-quick", True)):
        _register(_name, f"embedded instance-retrieval scenes of Fashion-MNIST {_src} items in "
                  f"the Oxford layout + revisited .pkl (built on first use: dcbench data build "
                  f"{_base}{' --quick' if _quick else ''})", check=_current_build,
                  size="small", native=96, mean=(fashion_mnist.MEAN,) * 3,
                  std=(fashion_mnist.STD,) * 3, builder=_fmnist(_base, _quick),
                  quick_variant=None if _quick else _base + "-quick")
