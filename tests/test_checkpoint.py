"""Checkpoints: dcbench's own round trip, the released DeepCluster format, DDP and plain state
dicts, arch inference, random baselines, and a one-line CheckpointError for every bad input."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from dcbench.atomic import atomic_append_lines, atomic_write_bytes
from dcbench.checkpoint import (
    infer_arch,
    load_into,
    load_trunk,
    save_checkpoint,
)
from dcbench.checkpoint_layouts import strip_wrappers
from dcbench.errors import CheckpointError
from dcbench.models import VGG16, build_model
from dcbench.provenance import sha256_file
from dcbench.zoo import manifest

RELEASED_K = 37


def _same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def _small(k: int | None = None, seed: int = 1, sobel: bool = True):
    """A seeded alexnet-small whose BN running statistics are not the defaults, so that
    eval-mode outputs depend on every buffer being loaded."""
    model = build_model("alexnet-small", sobel=sobel, k=k, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    for name, buf in model.named_buffers():
        if name.endswith("running_mean"):
            buf.copy_(torch.randn(buf.shape, generator=gen) * 0.1)
        elif name.endswith("running_var"):
            buf.copy_(torch.rand(buf.shape, generator=gen) + 0.5)
    return model.eval()


def _one_line_error(spec: str) -> str:
    with pytest.raises(CheckpointError) as err:
        load_trunk(spec)
    msg = str(err.value)
    assert msg and "\n" not in msg
    return msg


def write_released_alexnet(path: Path) -> dict[str, torch.Tensor]:
    """A file in the released DeepCluster format (REFERENCE.md): only arch/epoch/state_dict,
    features under DataParallel's 'features.module.', no num_batches_tracked, a Sobel front
    end and a top layer (k=37 here instead of 10000, to stay light)."""
    model = build_model("alexnet", sobel=True, k=RELEASED_K, seed=5)
    state = {}
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        state[key.replace("features.", "features.module.", 1)] = value
    torch.save({"arch": "alexnet", "epoch": 500, "state_dict": state}, path)
    return state


def test_dcbench_round_trip(tmp_path: Path) -> None:
    model = _small(k=10)
    path = tmp_path / "run" / "checkpoint.pth.tar"
    config = {"data": "fashion-mnist", "k": 10, "lr": 0.05}
    save_checkpoint(path, model, epoch=3, method="deepcluster", seed=1, config=config,
                    optimizer={"state": {}, "param_groups": []})
    raw = torch.load(path, weights_only=True)
    for key in ("config", "seed", "code_version", "method", "k", "epoch", "arch", "optimizer"):
        assert key in raw, key
    assert raw["k"] == 10 and raw["method"] == "deepcluster" and raw["config"] == config

    loaded, info = load_trunk(str(path))
    assert not loaded.training
    assert _same_state(loaded.state_dict(), model.state_dict())
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert (info.format, info.arch, info.sobel, info.epoch) == ("dcbench", "alexnet-small", True, 3)
    assert (info.method, info.k, info.seed, info.data) == ("deepcluster", 10, 1, "fashion-mnist")
    assert info.path == str(path) and info.sha256 == sha256_file(path)
    assert info.provenance["config"] == config
    assert info.provenance["code_version"] == raw["code_version"]
    assert set(info.as_record()) >= {"path", "sha256", "arch", "sobel", "format", "epoch",
                                     "method", "k", "data"}
    assert not list(tmp_path.glob("run/.*.tmp"))          # the atomic write left no temp file


def test_released_deepcluster_format_loads_by_manifest_name(tmp_path: Path,
                                                           monkeypatch) -> None:
    entry = manifest()["deepcluster-alexnet"]
    path = tmp_path / entry["file"]          # where a user puts the downloaded file
    state = write_released_alexnet(path)
    monkeypatch.setenv("DCBENCH_PRETRAINED", str(tmp_path))
    model, info = load_trunk("deepcluster-alexnet")
    assert (info.format, info.arch, info.sobel, info.k) == ("deepcluster", "alexnet", True,
                                                            RELEASED_K)
    assert info.path == str(path) and info.data == entry["data"] and entry["arch"] == "alexnet"
    assert info.epoch == 500 and info.method == "deepcluster" and info.seed is None
    loaded = model.state_dict()
    for key, value in state.items():
        assert torch.equal(loaded[key.replace("features.module.", "features.")], value), key
    assert model.top_layer.weight.shape == (RELEASED_K, 4096)
    assert all(not v.any() for k, v in loaded.items() if k.endswith("num_batches_tracked"))


def test_ddp_prefixed_state_dict_loads(tmp_path: Path) -> None:
    model = _small(k=4)
    wrapped = {"module." + k: v for k, v in model.state_dict().items()}
    path = tmp_path / "ddp.pth"
    torch.save({"arch": "alexnet-small", "epoch": 2, "state_dict": wrapped}, path)
    loaded, info = load_trunk(str(path))
    assert _same_state(loaded.state_dict(), model.state_dict())
    assert info.format == "deepcluster" and info.k == 4
    # DDP around a model whose features were wrapped in DataParallel (the original code)
    assert strip_wrappers({"module.features.module.0.weight": torch.zeros(1)}) == {
        "features.0.weight": torch.zeros(1)}


def test_plain_state_dict_infers_arch(tmp_path: Path) -> None:
    for sobel in (True, False):
        model = _small(sobel=sobel)
        path = tmp_path / f"plain-{sobel}.pth"
        torch.save(model.state_dict(), path)
        loaded, info = load_trunk(str(path))
        assert (info.format, info.arch, info.sobel, info.k) == ("state_dict", "alexnet-small",
                                                                sobel, None)
        assert _same_state(loaded.state_dict(), model.state_dict())


def test_vgg16_inference_with_torchvision_head() -> None:
    for sobel in (True, False):
        with torch.device("meta"):           # shapes only: a real VGG16 is 550 MB
            state = VGG16(sobel=sobel).trunk_state_dict()
            state["classifier.6.weight"] = torch.empty(1000, 4096)
            state["classifier.6.bias"] = torch.empty(1000)
        assert infer_arch(state) == "vgg16"
        with torch.device("meta"):
            model = VGG16(sobel=sobel)
        load_into(model, state, "torchvision vgg16_bn")
        assert model.top_layer is not None and model.top_layer.out_features == 1000
    with pytest.raises(CheckpointError, match="cannot tell the architecture"):
        infer_arch({"classifier.0.weight": torch.empty(3, 3)})


def test_random_checkpoints_are_deterministic() -> None:
    a, info_a = load_trunk("random:alexnet-small:3")
    b, info_b = load_trunk("random:alexnet-small:3")
    c, _ = load_trunk("random:alexnet-small:4")
    assert _same_state(a.state_dict(), b.state_dict()) and not a.training
    assert not torch.equal(a.features[0].weight, c.features[0].weight)
    assert (info_a.format, info_a.method, info_a.seed, info_a.sobel) == ("random", "random", 3,
                                                                       True)
    # the sha256 of the canonical name: hashlib.sha256(b"random:alexnet-small:3")
    assert info_a.sha256 == info_b.sha256 == \
        "003f7de2a76e2eea9ea86855cadb027723de42ec4427a6d0424ea29146b7864d"
    assert info_a.path == "random:alexnet-small:3"
    rgb, info_rgb = load_trunk("random-rgb:alexnet-small")
    assert not rgb.has_sobel and not info_rgb.sobel and info_rgb.method == "random-rgb"
    assert info_rgb.path == "random-rgb:alexnet-small:0" and info_rgb.seed == 0


def test_file_named_random_is_a_file(tmp_path: Path, monkeypatch) -> None:
    torch.save(_small().state_dict(), tmp_path / "random_init.pth")
    monkeypatch.chdir(tmp_path)
    assert load_trunk("random_init.pth")[1].format == "state_dict"


# ---------------------------------------------------------------- refusals, one line each


def _save_wrapped(path: Path, state: dict, arch: str = "alexnet-small") -> str:
    torch.save({"arch": arch, "epoch": 1, "state_dict": state}, path)
    return str(path)


def test_missing_trunk_keys_are_listed(tmp_path: Path) -> None:
    state = _small().state_dict()
    del state["features.4.weight"], state["classifier.1.bias"]
    msg = _one_line_error(_save_wrapped(tmp_path / "m.pth", state))
    assert "missing 2 trunk keys" in msg
    assert "features.4.weight" in msg and "classifier.1.bias" in msg


def test_unexpected_keys_are_listed(tmp_path: Path) -> None:
    state = _small().state_dict()
    state["features.99.weight"] = torch.zeros(3)
    msg = _one_line_error(_save_wrapped(tmp_path / "u.pth", state))
    assert "unexpected 1 keys: features.99.weight" in msg


def test_sobel_checkpoint_into_rgb_arch_is_refused(tmp_path: Path) -> None:
    state = _small(sobel=False).state_dict()      # conv1 reads 3 channels
    state.update({k: v for k, v in _small().state_dict().items() if k.startswith("sobel.")})
    msg = _one_line_error(_save_wrapped(tmp_path / "s.pth", state))
    assert "shape mismatch" in msg and "features.0.weight" in msg


def test_shape_mismatch_is_refused(tmp_path: Path) -> None:
    state = _small().state_dict()
    state["classifier.4.weight"] = torch.zeros(512, 100)
    msg = _one_line_error(_save_wrapped(tmp_path / "x.pth", state))
    assert "shape mismatch" in msg and "classifier.4.weight (512, 100) vs (512, 512)" in msg


def test_head_that_does_not_fit_is_refused(tmp_path: Path) -> None:
    state = _small(k=5).state_dict()
    state["top_layer.weight"] = torch.zeros(5, 100)
    msg = _one_line_error(_save_wrapped(tmp_path / "h.pth", state))
    assert "top_layer.weight (5, 100)" in msg
    del state["top_layer.weight"]
    assert "head" in _one_line_error(_save_wrapped(tmp_path / "h2.pth", state))


def test_unknown_arch_in_file_is_refused(tmp_path: Path) -> None:
    msg = _one_line_error(_save_wrapped(tmp_path / "a.pth", _small().state_dict(), "resnet50"))
    assert "resnet50" in msg


def test_truncated_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cut.pth.tar"
    save_checkpoint(path, _small(k=3), epoch=1, method="deepcluster")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    msg = _one_line_error(str(path))
    assert str(path) in msg and "is truncated or corrupt" in msg


def test_text_and_non_dict_files_are_refused(tmp_path: Path) -> None:
    text = tmp_path / "notes.pth"
    text.write_text("this is not a checkpoint\nsecond line\n")
    assert str(text) in _one_line_error(str(text))
    listing = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], listing)
    assert "not a checkpoint dict" in _one_line_error(str(listing))
    odd = tmp_path / "odd.pth"
    torch.save({"state_dict": {"features.0.weight": 3}}, odd)
    assert "not a tensor" in _one_line_error(str(odd))


def test_missing_path_and_bad_specs() -> None:
    msg = _one_line_error("/nonexistent/dir/ckpt.pth")
    assert "/nonexistent/dir/ckpt.pth" in msg and "deepcluster-alexnet" in msg
    assert "unknown arch 'nope'" in _one_line_error("random:nope")
    assert "bad random checkpoint spec" in _one_line_error("random:alexnet:x")


def test_manifest_name_not_downloaded_gives_url(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DCBENCH_PRETRAINED", str(tmp_path))
    for name, entry in manifest().items():
        msg = _one_line_error(name)
        assert entry["url"] in msg and entry["file"] in msg and "not downloaded" in msg


def test_manifest_file_of_the_wrong_arch_is_refused(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DCBENCH_PRETRAINED", str(tmp_path))
    entry = manifest()["deepcluster-alexnet"]
    save_checkpoint(tmp_path / entry["file"], _small(), epoch=1, method="deepcluster")
    msg = _one_line_error("deepcluster-alexnet")
    assert "holds a alexnet-small" in msg and "says 'deepcluster-alexnet' is a alexnet" in msg


# ---------------------------------------------------------------- atomic writes


def _fail(*_args, **_kwargs):
    raise OSError("disk full (simulated)")


@pytest.mark.parametrize("where", ["fsync", "replace"])
def test_atomic_write_keeps_old_file_on_failure(tmp_path: Path, monkeypatch, where: str) -> None:
    target = tmp_path / "checkpoint.pth.tar"
    atomic_write_bytes(target, b"old contents")
    monkeypatch.setattr(os, where, _fail)          # fails after the new bytes were written
    with pytest.raises(OSError, match="simulated"):
        atomic_write_bytes(target, b"new contents that never land")
    monkeypatch.undo()
    assert target.read_bytes() == b"old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pth.tar"]


def test_atomic_write_gives_the_mode_of_a_plain_write(tmp_path: Path) -> None:
    """Results are shared: the temp file's private 0600 must not survive the rename."""
    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "atomic.txt", b"x")
        (tmp_path / "plain.txt").write_bytes(b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "atomic.txt").stat().st_mode == (tmp_path / "plain.txt").stat().st_mode
    assert (tmp_path / "atomic.txt").stat().st_mode & 0o777 == 0o644


def test_atomic_torch_save_failure_leaves_no_file(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(os, "replace", _fail)
    with pytest.raises(OSError):
        save_checkpoint(tmp_path / "new.pth.tar", _small(), epoch=1, method="deepcluster")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_atomic_append_lines_whole_lines_only(tmp_path: Path, monkeypatch) -> None:
    log = tmp_path / "log.jsonl"
    log.write_bytes(b'{"epoch": 0}\n{"epoch": 1, "cut')     # a writer died mid-line before
    atomic_append_lines(log, ['{"epoch": 2}', '{"epoch": 3}\n'])
    lines = log.read_text().split("\n")
    assert lines == ['{"epoch": 0}', '{"epoch": 1, "cut', '{"epoch": 2}', '{"epoch": 3}', ""]
    before = log.read_bytes()
    monkeypatch.setattr(os, "replace", _fail)
    with pytest.raises(OSError):
        atomic_append_lines(log, ['{"epoch": 4}'])
    monkeypatch.undo()
    assert log.read_bytes() == before and before.endswith(b"\n")
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    atomic_append_lines(tmp_path / "new" / "records.jsonl", ["a"])
    assert (tmp_path / "new" / "records.jsonl").read_text() == "a\n"
