"""The scenes of fmnist-voc: how one image, its masks and its objects are drawn.

1-4 tinted, resized, flipped, possibly truncated and occluded Fashion-MNIST items on textured
backgrounds strewn with unlabelled item fragments. Colour, size, position and background are
drawn independently of the class, so no trivial cue gives the class away. Every draw comes
from the generator passed in, so a scene is reproducible from its seed. Writing the scenes
in the devkit layout is dcbench/data/embedded/voc_builder.py's job.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

# Mask index = position in the SORTED class list + 1, the order the devkit loader (and VOC,
# whose 20 names are alphabetical) numbers classes in.
FMNIST_VOC_CLASSES = ["tshirt", "trouser", "pullover", "dress", "coat",
                      "sandal", "shirt", "sneaker", "bag", "ankleboot"]
MASK_INDEX = {c: sorted(FMNIST_VOC_CLASSES).index(name) + 1
              for c, name in enumerate(FMNIST_VOC_CLASSES)}
SIDES = (48, 56, 64)                          # image widths/heights, so aspect ratios vary
ITEM_COUNT_P = (0.02, 0.45, 0.33, 0.15, 0.05)   # P(0..4 items in a scene)
ITEM_SIDE = (24, 48)                          # resized item side, inclusive
OBJECT_LEVEL = 0.15 * 255                     # item intensity above which a pixel is object
MAX_HIDDEN = 0.6                              # a new item may hide at most this of an old one
PLACEMENT_TRIES = 5
DIFFICULT_AREA = 120                          # visible pixels below which an object is difficult
DIFFICULT_VISIBLE = 0.35                      # ... or visible fraction of its in-image area
VOID = 255
# Fashion-MNIST items are light on black: mostly light items keep the set a transfer target
# for trunks trained on it (with 50 % dark-on-light items, Sobel sees flipped gradients and a
# supervised trunk's features barely beat a random one's: see the README).
LIGHT_ITEMS = 0.85
BACKGROUND_MAX = 0.45       # backgrounds darker than most items, as Fashion-MNIST's black
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass
class VocObject:
    """One annotated object: class index, 1-based inclusive box (xmin, ymin, xmax, ymax)."""

    cls: int
    box: tuple[int, int, int, int]
    truncated: bool
    difficult: bool


@dataclass
class Scene:
    image: np.ndarray          # H x W x 3 uint8
    cls_mask: np.ndarray       # H x W uint8: 0 background, 1..10 class + 1, 255 void
    obj_mask: np.ndarray       # H x W uint8: 0 background, 1..n instance, 255 void
    objects: list[VocObject]


@dataclass
class Pool:
    """The Fashion-MNIST images one split's scenes draw items and fragments from."""

    images: np.ndarray         # N x 28 x 28 uint8
    labels: np.ndarray


def _window(y0: int, x0: int, ph: int, pw: int, h: int, w: int):
    """Overlapping slices of the image and of a (ph, pw) patch placed at (y0, x0), or None."""
    ya, yb, xa, xb = max(y0, 0), min(y0 + ph, h), max(x0, 0), min(x0 + pw, w)
    if ya >= yb or xa >= xb:
        return None
    return (slice(ya, yb), slice(xa, xb)), (slice(ya - y0, yb - y0), slice(xa - x0, xb - x0))


def _offset(rng: np.random.Generator, size: float) -> np.ndarray:
    """A random RGB step whose largest channel change is `size`."""
    d = rng.standard_normal(3).astype(np.float32)
    return d * (size / max(float(np.abs(d).max()), 1e-6))


def _tint(rng: np.random.Generator, under: np.ndarray) -> np.ndarray:
    """A colour that usually stands out from the pixels it will cover (light on dark or dark
    on light), sometimes any colour at all, so contrast is a cue only on average."""
    mean = under.reshape(-1, 3).mean(0)
    if rng.random() < 0.2:
        for _try in range(4):                    # any colour, but not the background's own
            colour = rng.random(3).astype(np.float32)
            if np.abs(colour - mean).max() >= 0.15:
                break
        return colour
    lum = float(LUMA @ mean)
    light = rng.random() < LIGHT_ITEMS
    if (light and lum > 0.75) or (not light and lum < 0.25):
        light = not light
    step = rng.uniform(0.25, 0.7)
    target = float(np.clip(lum + step if light else lum - step, 0.02, 0.98))
    chroma = rng.uniform(-1, 1, 3).astype(np.float32)
    chroma -= LUMA @ chroma                                   # keep the luminance
    chroma *= rng.uniform(0, 0.35) / max(float(np.abs(chroma).max()), 1e-6)
    return np.clip(target + chroma, 0, 1).astype(np.float32)


def _blend(img: np.ndarray, alpha: np.ndarray, y0: int, x0: int,
           rng: np.random.Generator, gain: float = 1.0) -> None:
    """Alpha-blend a tinted patch (alpha = intensity in [0, 1]) over `img` in place."""
    h, w = img.shape[:2]
    win = _window(y0, x0, alpha.shape[0], alpha.shape[1], h, w)
    if win is None:
        return
    (iy, ix), (py, px) = win
    region = img[iy, ix]
    colour = _tint(rng, region)
    a = alpha[py, px, None] * gain
    img[iy, ix] = region * (1 - a) + colour * a


def _resize(pixels: np.ndarray, width: int, height: int, flip: bool = False) -> np.ndarray:
    out = np.asarray(Image.fromarray(pixels).resize((width, height), Image.BILINEAR))
    return out[:, ::-1] if flip else out


def _taper(n: int) -> np.ndarray:
    """1 inside, 2/3 and 1/3 on the last two pixels of each end."""
    i = np.arange(n)
    return np.minimum(1.0, (np.minimum(i, n - 1 - i) + 1) / 3).astype(np.float32)


def _fragments(rng: np.random.Generator, img: np.ndarray, pool: Pool, count: int) -> None:
    """Paste crops of other items: unlabelled clutter that looks locally like an item."""
    h, w = img.shape[:2]
    for _ in range(count):
        src = pool.images[rng.integers(len(pool.images))]
        ch, cw = (int(v) for v in rng.integers(6, 15, 2))
        for _try in range(3):                   # prefer a crop that holds some of the item
            cy, cx = (int(v) for v in rng.integers(0, [29 - ch, 29 - cw]))
            crop = src[cy:cy + ch, cx:cx + cw]
            if crop.max() > 80:
                break
        f = rng.uniform(0.8, 2.0)
        crop = _resize(crop, max(2, round(cw * f)), max(2, round(ch * f)), rng.random() < 0.5)
        fh, fw = crop.shape
        taper = np.outer(_taper(fh), _taper(fw))   # soft cut edges: less like a pasted box
        y0 = int(rng.integers(-fh // 2, h - fh // 2))
        x0 = int(rng.integers(-fw // 2, w - fw // 2))
        _blend(img, crop.astype(np.float32) / 255 * taper, y0, x0, rng, rng.uniform(0.2, 0.6))


def _background(rng: np.random.Generator, h: int, w: int, pool: Pool) -> np.ndarray:
    """A gradient plus noise, stripes/checks or fragments: never trivially flat."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(0.0, BACKGROUND_MAX, 3).astype(np.float32)
    far = np.clip(base + _offset(rng, rng.uniform(0.05, 0.4)), 0, 1)
    ang = rng.uniform(0, 2 * np.pi)
    t = xx * np.cos(ang) + yy * np.sin(ang)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    img = base + t[..., None] * (far - base)
    kind = rng.choice(3, p=[0.35, 0.35, 0.3])      # noise, pattern, fragments only
    amp = rng.uniform(0.03, 0.15)
    if kind == 0:
        cell = int(rng.integers(3, 13))
        small = (rng.random((h // cell + 2, w // cell + 2, 3)) * 255).astype(np.uint8)
        noise = np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC), np.float32)
        img += (noise / 255 - 0.5) * (2 * amp)
    elif kind == 1:
        period = rng.uniform(5, 24)
        ang = rng.uniform(0, np.pi)
        u = (xx * np.cos(ang) + yy * np.sin(ang)) * (2 * np.pi / period) + rng.uniform(0, 7)
        wave = np.sin(u)
        if rng.random() < 0.5:                    # checks rather than stripes
            v = (yy * np.cos(ang) - xx * np.sin(ang)) * (2 * np.pi / period)
            wave = wave * np.sin(v + rng.uniform(0, 7))
        mix = 0.5 + 0.5 * np.clip(wave * rng.uniform(1, 6), -1, 1)
        img += mix[..., None] * _offset(rng, 2 * amp)
    img = np.clip(img, 0, 1)
    if kind == 2 or rng.random() < 0.45:
        _fragments(rng, img, pool, int(rng.integers(4, 15)))
    return img


def _dilate(mask: np.ndarray) -> np.ndarray:
    """3x3 binary dilation (numpy only: masks are tiny, scipy's overhead would dominate)."""
    h, w = mask.shape
    p = np.pad(mask, 1)
    out = np.zeros_like(mask)
    for dy in range(3):
        for dx in range(3):
            out |= p[dy:dy + h, dx:dx + w]
    return out


def make_scene(rng: np.random.Generator, pool: Pool) -> Scene:
    """Draw one scene: background, then items in order (later ones occlude earlier ones)."""
    h, w = (int(v) for v in rng.choice(SIDES, 2))
    img = _background(rng, h, w, pool)
    masks: list[np.ndarray] = []       # each placed item's in-image object pixels
    visible: list[np.ndarray] = []     # ... minus the pixels later items cover
    items: list[tuple[int, bool]] = []
    for _ in range(int(rng.choice(5, p=ITEM_COUNT_P))):
        k = int(rng.integers(len(pool.images)))
        side = int(rng.integers(ITEM_SIDE[0], ITEM_SIDE[1] + 1))
        item = _resize(pool.images[k], side, side, rng.random() < 0.5)
        obj = item > OBJECT_LEVEL
        for _try in range(PLACEMENT_TRIES):
            y0 = int(rng.integers(-side // 4, h - side + side // 4 + 1))
            x0 = int(rng.integers(-side // 4, w - side + side // 4 + 1))
            (iy, ix), (py, px) = _window(y0, x0, side, side, h, w)
            m = np.zeros((h, w), bool)
            m[iy, ix] = obj[py, px]
            n_in = int(m.sum())
            if n_in and all((v & m).sum() <= MAX_HIDDEN * v.sum() for v in visible):
                break
        else:
            continue                    # no placement keeps earlier items visible: drop it
        for v in visible:
            v &= ~m
        masks.append(m)
        visible.append(m.copy())
        items.append((int(pool.labels[k]), n_in < int(obj.sum())))
        _blend(img, item.astype(np.float32) / 255, y0, x0, rng)
    sigma = rng.uniform(0, 0.03)
    img += rng.standard_normal(img.shape, dtype=np.float32) * sigma
    image = np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)

    cls_mask = np.zeros((h, w), np.uint8)
    obj_mask = np.zeros((h, w), np.uint8)
    band = np.zeros((h, w), bool)
    objects: list[VocObject] = []
    for m, v, (cls, truncated) in zip(masks, visible, items):
        area = int(v.sum())
        if area == 0:
            continue
        rows, cols = np.flatnonzero(v.any(1)), np.flatnonzero(v.any(0))
        box = (int(cols[0]) + 1, int(rows[0]) + 1, int(cols[-1]) + 1, int(rows[-1]) + 1)
        difficult = area < DIFFICULT_AREA or area < DIFFICULT_VISIBLE * int(m.sum())
        objects.append(VocObject(cls, box, truncated, difficult))
        cls_mask[v] = MASK_INDEX[cls]
        obj_mask[v] = len(objects)
        band |= _dilate(v)
    # void: the 1-pixel ring just outside the objects, where item edges blend into the
    # background (intensity below the object level); labelled pixels are never voided, so a
    # box stays tight around its instance's pixels
    ring = band & (obj_mask == 0)
    cls_mask[ring] = VOID
    obj_mask[ring] = VOID
    return Scene(image, cls_mask, obj_mask, objects)
