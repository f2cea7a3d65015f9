"""fmnist-oxford / fmnist-paris and the Oxford/Paris loader: both layouts written and read,
agreeing with each other and with what the scenes show; reproducible; disjoint; and every
broken input named in one line."""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dcbench.cli import main
from dcbench.data import build_dataset, validate_dataset
from dcbench.data.embedded.build_digests import write_digests
from dcbench.data.embedded.retrieval_builder import GOOD, OK, SETS, SIZES, build_fmnist_retrieval
from dcbench.data.idx import FILES, read_idx
from dcbench.data.retrieval.oxford_paris import RetrievalSet, load_retrieval_set, retrieval_images
from dcbench.errors import DataError

FMNIST = Path("/usr/share/datasets/fashion-mnist")
QUICK = SIZES["quick"]
N_QUERIES = QUICK["instances"] * QUICK["queries"]
N_IMAGES = QUICK["instances"] * (QUICK["scenes"] + QUICK["queries"]) + QUICK["distractors"]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """<data-root> holding both quick sets (shared by the module: do not modify)."""
    base = tmp_path_factory.mktemp("retrieval")
    for name in SETS:
        build_fmnist_retrieval(base / f"{name}-quick", name, FMNIST, quick=True,
                               show_progress=False)
    return base


def _size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        return im.size


def _scenes(root: Path) -> dict:
    return json.loads((root / "scenes.json").read_text())


def _names(rs: RetrievalSet, idx: np.ndarray, images: list[str] | None = None) -> set[str]:
    return {(images or rs.images)[i] for i in idx}


@pytest.mark.parametrize("name", list(SETS))
def test_both_layouts_read_and_agree(built: Path, name: str) -> None:
    root = built / f"{name}-quick"
    rs = load_retrieval_set(root)
    rev = rs.revisited
    assert rev is not None and rev.path.name == SETS[name][2]
    assert len(rs.images) == N_IMAGES and len(rs.queries) == N_QUERIES
    assert len(rev.images) == N_IMAGES - N_QUERIES and rev.query_images == rs.query_images
    assert not set(rev.images) & set(rev.query_images)       # revisited: queries left out
    np.testing.assert_array_equal(rev.query_boxes, rs.query_boxes)
    first = (root / "gt" / f"{rs.queries[0]}_query.txt").read_text().split()[0]
    assert first == SETS[name][1] + rs.query_images[0]      # oxc1_ prefix for Oxford only
    shown = _scenes(root)["images"]
    queries = set(rs.query_images)
    for q, qimg in enumerate(rs.query_images):
        inst = shown[qimg]["instance"]
        good, ok, junk = (_names(rs, x[q]) for x in (rs.good, rs.ok, rs.junk))
        assert qimg in good                                     # Oxford lists the query itself
        # easy = good, hard = ok, junk = junk, minus the query images
        for orig, new in ((good, rev.easy), (ok, rev.hard), (junk, rev.junk)):
            assert orig - queries == _names(rs, new[q], rev.images)
        # the bins are the instance's visible fraction in each scene, and cover its scenes
        assert good | ok | junk == {m for m, v in shown.items() if v["instance"] == inst}
        assert all(shown[m]["visible"] >= GOOD for m in good)
        assert all(OK <= shown[m]["visible"] < GOOD for m in ok)
        assert all(shown[m]["visible"] < OK for m in junk)
    assert all(len(x) for x in rev.easy) and any(len(x) for x in rev.hard)
    assert any(len(x) for x in rev.junk)


def test_rebuild_is_byte_identical(built: Path, tmp_path: Path) -> None:
    def hashes(root: Path) -> dict[str, str]:
        return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*")) if p.is_file()}

    again = build_fmnist_retrieval(tmp_path / "again", "fmnist-oxford", FMNIST, quick=True,
                                   show_progress=False)
    first = hashes(built / "fmnist-oxford-quick")
    # images, 4 gt files per query, the gnd pickle, scenes.json, BUILD_INFO.json, DIGESTS.json
    assert hashes(again) == first and len(first) == N_IMAGES + 4 * N_QUERIES + 4
    # the same call on a finished build returns it untouched; a different one refuses
    assert build_fmnist_retrieval(again, "fmnist-oxford", FMNIST, quick=True,
                                  show_progress=False) == again
    with pytest.raises(DataError, match="not a complete fmnist-oxford build"):
        build_fmnist_retrieval(again, "fmnist-oxford", FMNIST, quick=True, seed=1,
                               show_progress=False)


def test_sets_share_no_item_image_and_have_same_class_distractors(built: Path) -> None:
    used: dict[str, set[bytes]] = {}
    for name, (split, _prefix, _pkl) in SETS.items():
        images = read_idx(FMNIST / FILES[split][0], 2051)
        info = _scenes(built / f"{name}-quick")
        instances = {i["src"]: i["cls"] for i in info["instances"]}
        assert len(instances) == QUICK["instances"]
        used[name] = {images[s].tobytes() for v in info["images"].values() for s in v["items"]}
        for src, cls in instances.items():
            # scenes without the instance whose main item is another item of its class
            others = [v["items"][0] for v in info["images"].values()
                      if v["instance"] == -1 and v["classes"][0] == cls]
            assert others and src not in others
            assert all(images[o].tobytes() != images[src].tobytes() for o in others)
    assert not used["fmnist-oxford"] & used["fmnist-paris"]


def test_registry_items(built: Path) -> None:
    report = validate_dataset("fmnist-paris-quick", data_root=built)
    assert report.splits == {"database": N_IMAGES, "query": N_QUERIES,
                             "revisited-database": N_IMAGES - N_QUERIES,
                             "revisited-query": N_QUERIES}
    db = build_dataset("fmnist-paris-quick", "database", None, data_root=built)
    img, label = db[0]
    assert len(db) == N_IMAGES and label == -1 and max(img.size) == 96
    rs = load_retrieval_set(built / "fmnist-paris-quick")
    box = rs.query_boxes[0]
    # DC: resize the image (longest side 96), then crop to the box scaled alike
    q = build_dataset("fmnist-paris-quick", "query", None, data_root=built)[0][0]
    w, h = _size(rs.path(rs.query_images[0]))
    ratio = 96 / max(w, h)
    assert abs(q.size[0] - (box[2] - box[0]) * ratio) <= 1.5
    assert abs(q.size[1] - (box[3] - box[1]) * ratio) <= 1.5
    # revisited (RO): crop first, then the crop's longest side is 96
    rq = retrieval_images(rs, "revisited-query", max_side=96)[0][0]
    assert max(rq.size) == 96


@pytest.fixture
def broken(built: Path, tmp_path: Path) -> tuple[Path, RetrievalSet]:
    """A private copy of the quick fmnist-oxford to break."""
    root = tmp_path / "fmnist-oxford-quick"
    shutil.copytree(built / "fmnist-oxford-quick", root)
    return root, load_retrieval_set(root)


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_missing_gt_file_is_named(broken) -> None:
    root, rs = broken
    gone = root / "gt" / f"{rs.queries[3]}_ok.txt"
    gone.unlink()
    with pytest.raises(DataError) as e:
        load_retrieval_set(root)
    assert str(gone) in _one_line(e) and "gt file missing" in str(e.value)


def test_missing_query_image_is_named(broken) -> None:
    root, rs = broken
    rs.path(rs.query_images[2]).unlink()
    with pytest.raises(DataError) as e:
        load_retrieval_set(root)
    msg = _one_line(e)
    assert f"query image {rs.query_images[2]} " in msg and "missing from the database" in msg


def test_box_outside_its_image_is_named(broken) -> None:
    root, rs = broken
    qfile = root / "gt" / f"{rs.queries[1]}_query.txt"
    qfile.write_text(f"oxc1_{rs.query_images[1]} 10.0 5.0 500.0 40.0\n")
    with pytest.raises(DataError) as e:
        load_retrieval_set(root)
    w, h = _size(rs.path(rs.query_images[1]))
    msg = _one_line(e)
    assert str(qfile) in msg and "(10, 5, 500, 40)" in msg and f"{w}x{h}" in msg


def test_revisited_box_and_index_checked(broken) -> None:
    root, rs = broken
    pkl = root / "gnd_roxford5k.pkl"
    cfg = pickle.loads(pkl.read_bytes())
    cfg["gnd"][0]["easy"] = [len(cfg["imlist"])]
    pkl.write_bytes(pickle.dumps(cfg))
    with pytest.raises(DataError, match="outside imlist") as e:
        load_retrieval_set(root)
    _one_line(e)


def test_cli_exit_2_one_line(broken, monkeypatch, capsys) -> None:
    root, rs = broken
    (root / "gt" / f"{rs.queries[0]}_junk.txt").unlink()
    write_digests(root)     # as a user's own tree (no digests to catch it): the parser must
    monkeypatch.setattr(sys, "argv", ["dcbench", "data", "validate", "fmnist-oxford-quick",
                                      "--root", str(root)])
    with pytest.raises(SystemExit) as e:
        main()
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: gt file missing") and err.count("\n") == 1
