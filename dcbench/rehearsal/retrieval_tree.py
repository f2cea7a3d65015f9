"""Oxford5k / Paris6k trees at their real size (the long side 1024 px, as the released
images), for rehearsing R-MAC retrieval: the embedded fmnist-oxford / fmnist-paris scenes
scaled up, with their ground truth in both layouts (gt/*.txt and the revisited gnd .pkl)
and every query box scaled with its image.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

from PIL import Image

from dcbench.safe_pickle import load_plain

LONG_SIDE = 1024
PKL = {"oxford5k": "gnd_roxford5k.pkl", "paris6k": "gnd_rparis6k.pkl"}


def _scale_line(line: str, factor: float) -> str:
    name, *box = line.split()
    return " ".join([name] + [f"{float(v) * factor:.1f}" for v in box])


def upscale_retrieval_tree(src: Path, out: Path, name: str) -> Path:
    """Copy the embedded set at `src` to `out` as `name` (oxford5k or paris6k) with every
    image scaled to a long side of 1024 px and the boxes with it."""
    factors: dict[str, float] = {}
    (out / "jpg").mkdir(parents=True, exist_ok=True)
    for path in sorted((src / "jpg").iterdir()):
        with Image.open(path) as im:
            factor = LONG_SIDE / max(im.size)
            size = (round(im.width * factor), round(im.height * factor))
            im.convert("RGB").resize(size, Image.BICUBIC).save(out / "jpg" / path.name,
                                                               quality=90)
        factors[path.stem] = factor
    (out / "gt").mkdir(exist_ok=True)
    for path in sorted((src / "gt").iterdir()):
        text = path.read_text()
        if path.name.endswith("_query.txt"):
            line = text.strip()
            image = re.sub(r"^oxc1_", "", line.split()[0])
            text = _scale_line(line, factors[image]) + "\n"
        (out / "gt" / path.name).write_text(text)
    pkl = next(iter(src.glob("gnd_r*.pkl")), None)
    if pkl is not None:
        gnd = load_plain(pkl)
        for q, entry in zip(gnd["qimlist"], gnd["gnd"]):
            entry["bbx"] = [float(v) * factors[q] for v in entry["bbx"]]
        with open(out / PKL[name], "wb") as f:
            pickle.dump(gnd, f, protocol=4)
    return out
