"""Known released checkpoints (pretrained/manifest.json) and where their downloads are found.

`--ckpt deepcluster-alexnet` looks for the manifest's file in $DCBENCH_PRETRAINED, then in
the pretrained/ folder of this checkout. dcbench never downloads: a missing file gives the URL
to fetch it from and the path to put it at.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

from dcbench.errors import CheckpointError


def manifest() -> dict[str, dict[str, Any]]:
    text = resources.files("dcbench.pretrained").joinpath("manifest.json").read_text()
    return json.loads(text)


def search_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("DCBENCH_PRETRAINED"):
        dirs.append(Path(os.environ["DCBENCH_PRETRAINED"]))
    dirs.append(Path(str(resources.files("dcbench.pretrained"))))
    return dirs


def resolve_pretrained(spec: str) -> Path:
    """A checkpoint path as given, or the downloaded file of a manifest name."""
    p = Path(spec).expanduser()
    if p.exists():
        return p
    known = manifest()
    if spec not in known:
        raise CheckpointError(f"checkpoint not found: '{spec}' is neither a file nor a name in "
                              f"pretrained/manifest.json ({', '.join(known)}) nor random:ARCH")
    entry = known[spec]
    for d in search_dirs():
        if (d / entry["file"]).is_file():
            return d / entry["file"]
    target = search_dirs()[-1] / entry["file"]
    raise CheckpointError(f"'{spec}' is not downloaded: fetch {entry['url']} and save it as "
                          f"{target} (or in $DCBENCH_PRETRAINED)")
