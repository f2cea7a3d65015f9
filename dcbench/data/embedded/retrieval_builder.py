"""fmnist-oxford / fmnist-paris: small instance-retrieval sets in the Oxford5k layout.

A few dozen item INSTANCES, each one particular Fashion-MNIST image (not a class): from the
training split for fmnist-oxford, from the test split for fmnist-paris (test images also in
the training split left out), so the sets share no item image and each can whiten the other.
Each instance appears in many 64-96 px scenes (voc_scenes.py's clutter backgrounds) under
scale, position, small rotation, brightness, partial occlusion (textured bands, items) and
clutter; distractor scenes show OTHER items of the SAME classes, some of them the instance's
pixel-nearest neighbours (never a near-copy: distance < TWIN_DIST), so class features alone
do not solve it. 5 query scenes per instance, box = the instance's visible pixels. A scene is
good for the instance's queries if >= 70 % of its pixels are visible (occlusion and image
border both count), ok at 40-70 %, junk below. gt/ lists every scene of the instance, query
images included (database images, as in Oxford); the revisited .pkl leaves query images out
of imlist and maps easy = good, hard = ok, junk = junk. scenes.json records each image's
items. Everything derives from `seed` (byte-identical rebuilds); the tree is renamed into
place only when complete.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from dcbench.data.embedded import voc_scenes as vs
from dcbench.data.embedded.build_digests import verify
from dcbench.data.embedded.voc_builder import publish_build, reuse_build
from dcbench.data.embedded.voc_scenes import FMNIST_VOC_CLASSES, OBJECT_LEVEL, Pool
from dcbench.data.idx import FILES, read_idx
from dcbench.data.registry import resolve_root
from dcbench.errors import DataError
from dcbench.progress import progress

SETS = {"fmnist-oxford": ("train", "oxc1_", "gnd_roxford5k.pkl"),   # source, query prefix, pkl
        "fmnist-paris": ("test", "", "gnd_rparis6k.pkl")}
SIZES = {"full": {"instances": 40, "scenes": 12, "queries": 5, "distractors": 320},
         "quick": {"instances": 8, "scenes": 10, "queries": 5, "distractors": 30}}
BUILDER_VERSION = 1
SCENE_SIDES = (64, 72, 80, 88, 96)
GOOD, OK = 0.7, 0.4                  # visible fraction: good >= GOOD > ok >= OK > junk
QUERY_VISIBLE = 0.9
OCCLUDE = {"good": (0.0, 0.25), "ok": (0.3, 0.6), "junk": (0.62, 0.92)}   # band depth
MAX_ANGLE = 15.0
MIN_INK = 120                        # object pixels an instance needs (of 784)
TWIN_DIST = 0.12                     # |a - b| / |a| below which b counts as a copy of a
HARD_NEGATIVES = 200                 # nearest same-class items a hard distractor comes from
TRIES = 8
JPEG_QUALITY = 90
LEVEL = OBJECT_LEVEL / 255


@dataclass
class Source:
    pool: Pool                       # usable non-instance items (distractors, fragments)
    src: np.ndarray                  # pool index -> index in the Fashion-MNIST split
    instances: list[int]             # split indices
    names: list[str]                 # instance names: <class>_<n>
    hard: list[np.ndarray]           # per instance: pool indices of its nearest same-class items
    by_class: list[np.ndarray]       # pool indices per class
    images: np.ndarray               # the whole split, N x 28 x 28
    classes: np.ndarray              # ... and its labels


def _source(root: Path, split: str, n: int, rng: np.random.Generator) -> Source:
    images = read_idx(root / FILES[split][0], 2051)
    labels = read_idx(root / FILES[split][1], 2049)
    excluded = np.zeros(len(labels), bool)
    if split != "train":                  # keep the sets disjoint: no image of the train split
        seen = {r.tobytes() for r in read_idx(root / FILES["train"][0], 2051)}
        excluded = np.array([r.tobytes() in seen for r in images])
    ink = (images > OBJECT_LEVEL).sum((1, 2))
    order = rng.permutation(10)
    picks: list[int] = []
    names: list[str] = []
    dist: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for pos, c in enumerate(order):
        count = len(range(pos, n, 10))       # instance i is of class order[i % 10]
        members = np.flatnonzero(labels == c)
        flat = images[members].reshape(len(members), -1).astype(np.int64)
        norms = (flat * flat).sum(1)
        for j in range(count):
            cand = members[~excluded[members] & (ink[members] >= MIN_INK)]
            k = int(cand[rng.integers(len(cand))])
            x = images[k].reshape(-1).astype(np.int64)
            rel = np.sqrt(np.maximum(norms + x @ x - 2 * (flat @ x), 0) / (x @ x))
            excluded[members[rel < TWIN_DIST]] = True
            excluded[k] = True
            picks.append(k)
            names.append(f"{FMNIST_VOC_CLASSES[int(c)]}_{j + 1}")
            dist[k] = (members, rel)
    keep = np.flatnonzero(~excluded)
    pool = Pool(images[keep], labels[keep])
    where = np.full(len(labels), -1)
    where[keep] = np.arange(len(keep))
    hard = []
    for k in picks:
        members, rel = dist[k]
        ok = ~excluded[members]
        hard.append(where[members[ok][np.argsort(rel[ok], kind="stable")[:HARD_NEGATIVES]]])
    by_class = [np.flatnonzero(pool.labels == c) for c in range(10)]
    return Source(pool, keep, picks, names, hard, by_class, images, labels)


def _patch(pixels: np.ndarray, side: int, angle: float, flip: bool) -> np.ndarray:
    """Item intensity as alpha in [0, 1]: resized, flipped, rotated (canvas grown to fit)."""
    im = Image.fromarray(np.ascontiguousarray(vs._resize(pixels, side, side, flip)))
    return np.asarray(im.rotate(angle, resample=Image.BILINEAR, expand=True), np.float32) / 255


def _place(rng: np.random.Generator, a: np.ndarray, h: int, w: int,
           out: float) -> tuple[int, int]:
    """A corner letting at most `out` of the patch's height / width leave the image."""
    (ph, pw), pos = a.shape, []
    for size, side in ((ph, h), (pw, w)):
        lo = -int(size * out)
        pos.append(int(rng.integers(lo, max(lo, side - size - lo) + 1)))
    return pos[0], pos[1]


def _object(a: np.ndarray, y0: int, x0: int, h: int, w: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    win = vs._window(y0, x0, a.shape[0], a.shape[1], h, w)
    if win is not None:
        (iy, ix), (py, px) = win
        m[iy, ix] = a[py, px] > LEVEL
    return m


def _bin(v: float) -> str:
    return "good" if v >= GOOD else "ok" if v >= OK else "junk"


def _bbox(m: np.ndarray) -> list[int] | None:
    """x1, y1, x2, y2 (exclusive) of a mask's pixels."""
    rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
    return [int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1] if len(rows) \
        else None


def _band(rng: np.random.Generator, img: np.ndarray, vis: np.ndarray, depth: float,
          pool: Pool) -> None:
    """Cover `depth` of the visible object's extent, from one side, with a textured band."""
    if (box := _bbox(vis)) is None:
        return
    side, size = int(rng.integers(4)), (vis.shape[1], vis.shape[0])
    a, b = side % 2, 1 - side % 2                 # along x (a = 0) or y; b the other axis
    d = max(1, round(depth * (box[a + 2] - box[a])))
    box[a + 2 * (side >= 2)] = box[a + 2] - d if side < 2 else box[a] + d
    box[b], box[b + 2] = max(0, box[b] - 2), min(size[b], box[b + 2] + 2)
    x1, y1, x2, y2 = box
    img[y1:y2, x1:x2] = vs._background(rng, y2 - y1, x2 - x1, pool)
    vis[y1:y2, x1:x2] = False


def _draw(rng: np.random.Generator, pool: Pool, main: np.ndarray, under: list[np.ndarray],
          target: str) -> tuple[np.ndarray, float, tuple[int, int, int, int]]:
    """One scene: background, clutter items, the main item, occluders, brightness, noise.
    Returns the image, the main item's visible fraction and its visible pixels' box."""
    h, w = (int(v) for v in rng.choice(SCENE_SIDES, 2))
    img = vs._background(rng, h, w, pool)
    short = min(h, w)
    for pixels in under:
        a = _patch(pixels, int(rng.uniform(0.3, 0.6) * short),
                   rng.uniform(-MAX_ANGLE, MAX_ANGLE), rng.random() < 0.5)
        y0, x0 = _place(rng, a, h, w, 0.3)
        vs._blend(img, a, y0, x0, rng, rng.uniform(0.6, 1.0))
    lo, hi = (0.5, 0.8) if target == "query" else (0.4, 0.85)
    a = _patch(main, int(rng.uniform(lo, hi) * short), rng.uniform(-MAX_ANGLE, MAX_ANGLE), False)
    total = max(int((a > LEVEL).sum()), 1)
    y0, x0 = _place(rng, a, h, w, 0.0 if target in ("query", "good") else 0.3)
    vs._blend(img, a, y0, x0, rng, rng.uniform(0.55, 1.0))
    vis = _object(a, y0, x0, h, w)
    if target != "query":
        depth = rng.uniform(*OCCLUDE[target])
        if depth > 0.03:
            _band(rng, img, vis, depth, pool)
        if rng.random() < 0.3:            # an item on top, wherever it falls
            o = _patch(pool.images[rng.integers(len(pool.images))],
                       int(rng.uniform(0.25, 0.45) * short), rng.uniform(-MAX_ANGLE, MAX_ANGLE),
                       rng.random() < 0.5)
            oy, ox = _place(rng, o, h, w, 0.3)
            vs._blend(img, o, oy, ox, rng, rng.uniform(0.6, 1.0))
            vis &= ~_object(o, oy, ox, h, w)
    img = img * rng.uniform(0.75, 1.25) + rng.uniform(-0.08, 0.08)
    img += rng.standard_normal(img.shape, dtype=np.float32) * rng.uniform(0, 0.03)
    image = np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)
    return image, float(vis.sum()) / total, tuple(_bbox(vis) or (0, 0, w, h))


def _scene(seed: int, key: tuple[int, ...], s: Source, k: int, target: str) -> dict:
    """Scene `key` of instance k (k >= 0) or a distractor of instance k's class (k < 0: ~k).
    Redrawn (same generator, further on) until its visibility lands in the target bin."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))
    inst = k if k >= 0 else ~k
    same = s.by_class[int(s.classes[s.instances[inst]])]

    def same_class() -> int:
        near = s.hard[inst]
        return int(near[rng.integers(len(near))] if rng.random() < 0.3 and len(near)
                   else same[rng.integers(len(same))])

    items = [] if k >= 0 else [same_class()]
    for _ in range(int(rng.integers(0, 3))):
        items.append(same_class() if rng.random() < 0.6 else
                     int(rng.integers(len(s.pool.images))))
    main = s.pool.images[items[0]] if k < 0 else s.images[s.instances[k]]
    under = [s.pool.images[i] for i in items[1 if k < 0 else 0:]]
    for _try in range(TRIES):
        image, v, box = _draw(rng, s.pool, main, under, target)
        if (v >= QUERY_VISIBLE) if target == "query" else _bin(v) == target:
            break
    srcs = [int(s.src[i]) for i in items]
    return {"image": image, "visible": v, "box": box,
            "items": srcs if k < 0 else [s.instances[k]] + srcs}


def _write(tmp: Path, name: str, seed: int, sizes: dict[str, int], s: Source,
           show_progress: bool) -> None:
    _src, prefix, pkl = SETS[name]
    n, nq, ns, nd = sizes["instances"], sizes["queries"], sizes["scenes"], sizes["distractors"]
    jobs = [((1, k, j), k, "query") for k in range(n) for j in range(nq)]
    targets = ["good"] * (ns - ns // 4 - ns // 6) + ["ok"] * (ns // 4) + ["junk"] * (ns // 6)
    jobs += [((0, k, j), k, t) for k in range(n) for j, t in enumerate(targets)]
    jobs += [((2, j), ~(j % n), ("good", "good", "ok", "junk")[j % 4]) for j in range(nd)]
    numbers = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(9,))).permutation(
        len(jobs)) + 1
    (tmp / "jpg").mkdir(parents=True)
    (tmp / "gt").mkdir()
    it = progress(jobs, name, total=len(jobs), unit="scene") if show_progress else jobs
    record: dict[str, dict] = {}
    queries: list[tuple[str, str, tuple[int, ...]]] = []
    for (key, k, target), num in zip(it, numbers):
        sc = _scene(seed, key, s, k, target)
        img_name = f"{s.names[k]}_{num:06d}" if k >= 0 else f"clutter_{num:06d}"
        Image.fromarray(sc["image"]).save(tmp / "jpg" / f"{img_name}.jpg", format="JPEG",
                                          quality=JPEG_QUALITY)
        record[img_name] = {"instance": k if k >= 0 else -1, "query": target == "query",
                            "visible": round(sc["visible"], 4), "items": sc["items"],
                            "classes": [int(c) for c in s.classes[sc["items"]]]}
        if target == "query":
            queries.append((f"{s.names[k]}_{key[2] + 1}", img_name, sc["box"]))
    queries.sort()
    qset = {q[1] for q in queries}
    imlist = sorted(m for m in record if m not in qset)
    row = {m: i for i, m in enumerate(imlist)}
    gnd = []
    for qid, img_name, box in queries:
        k = record[img_name]["instance"]
        lists = {b: [m for m in sorted(record) if record[m]["instance"] == k
                     and _bin(record[m]["visible"]) == b] for b in ("good", "ok", "junk")}
        (tmp / "gt" / f"{qid}_query.txt").write_text(
            f"{prefix}{img_name} " + " ".join(f"{v:.1f}" for v in box) + "\n")
        for kind, names in lists.items():
            (tmp / "gt" / f"{qid}_{kind}.txt").write_text("".join(f"{m}\n" for m in names))
        gnd.append({"bbx": [float(v) for v in box]} | {
            new: [row[m] for m in lists[old] if m in row]
            for new, old in (("easy", "good"), ("hard", "ok"), ("junk", "junk"))})
    cfg = {"imlist": imlist, "qimlist": [q[1] for q in queries], "gnd": gnd}
    (tmp / pkl).write_bytes(pickle.dumps(cfg, protocol=4))
    info = {"instances": [{"label": lab, "src": k, "cls": int(s.classes[k])}
                          for lab, k in zip(s.names, s.instances)], "images": record}
    (tmp / "scenes.json").write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")


def check_current(root: Path) -> None:
    """Refuse a set an older builder wrote (its scenes differ from today's) or one whose files
    changed since its build (a planted gnd pickle: build_digests.py)."""
    try:
        got = json.loads((root / "BUILD_INFO.json").read_text()).get("builder_version")
    except (OSError, ValueError):
        got = "none (no readable BUILD_INFO.json)"
    if got != BUILDER_VERSION:
        raise DataError(f"{root} was built by retrieval builder version {got}, this dcbench "
                        f"builds version {BUILDER_VERSION}; delete the folder and run again "
                        f"(it is rebuilt)")
    verify(root)


def build_fmnist_retrieval(target: Path, name: str, fmnist_root: Path | None = None,
                           quick: bool = False, show_progress: bool = True,
                           seed: int = 0) -> Path:
    """Build `name` (fmnist-oxford or fmnist-paris) at `target` and return it. An existing
    complete build with the same settings is returned as is; anything else there is a
    DataError."""
    if name not in SETS:
        raise DataError(f"no embedded retrieval set '{name}'; known: {', '.join(SETS)}")
    if seed < 0:
        raise ValueError("seed must be non-negative")
    out = Path(target)
    info = {"name": name, "seed": seed, "quick": quick, "source": SETS[name][0],
            "sizes": SIZES["quick" if quick else "full"], "builder_version": BUILDER_VERSION}
    if reuse_build(out, info, f"{name} build ({'quick' if quick else 'full'}, seed {seed})"):
        return out
    s = _source(resolve_root("fashion-mnist", fmnist_root), SETS[name][0],
                info["sizes"]["instances"],
                np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(7,))))
    return publish_build(out, info,
                         lambda tmp: _write(tmp, name, seed, info["sizes"], s, show_progress))
