"""Shared fixtures: small dataset layouts built once per session from Fashion-MNIST, and an
environment without progress bars or stray dataset/checkpoint locations."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from dcbench.data.embedded.builders import export_file_list, export_image_folder
from dcbench.data.embedded.voc_builder import build_fmnist_voc

FMNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")


@dataclass(frozen=True)
class TinySizes:
    """How many images the session layouts hold (tests compare counts against these)."""

    train_per_class: int = 3
    val_per_class: int = 2
    list_size: int = 12


TINY = TinySizes()


@pytest.fixture(autouse=True)
def quiet_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No progress bars, and no dataset or checkpoint folder leaking in from the user's shell."""
    monkeypatch.setenv("DCBENCH_NO_PROGRESS", "1")
    monkeypatch.delenv("DCBENCH_DATA", raising=False)
    monkeypatch.delenv("DCBENCH_PRETRAINED", raising=False)


@pytest.fixture(scope="session")
def fmnist_root() -> Path:
    """The installed Fashion-MNIST idx files (Debian's dataset-fashion-mnist)."""
    return FMNIST_ROOT


@pytest.fixture(scope="session")
def tiny_sizes() -> TinySizes:
    return TINY


@pytest.fixture(scope="session")
def tiny_image_folder(tmp_path_factory: pytest.TempPathFactory, fmnist_root: Path) -> Path:
    """An ImageNet-layout root: train/<class>/ with 3 images per class, val/<class>/ with 2.
    Shared by the session: tests must not modify it (copy it to tmp_path first)."""
    out = tmp_path_factory.mktemp("image_folder")
    return export_image_folder(out, TINY.train_per_class, TINY.val_per_class, fmnist_root)


@pytest.fixture(scope="session")
def tiny_file_list(tmp_path_factory: pytest.TempPathFactory, fmnist_root: Path) -> Path:
    """A YFCC1M-layout root: images/*.png and yfcc1m.txt listing 12 of them.
    Shared by the session: tests must not modify it (copy it to tmp_path first)."""
    out = tmp_path_factory.mktemp("file_list")
    return export_file_list(out, TINY.list_size, fmnist_root)


@pytest.fixture(scope="session")
def voc_quick_root(tmp_path_factory: pytest.TempPathFactory, fmnist_root: Path) -> Path:
    """<data-root> holding the quick fmnist-voc (shared: do not modify)."""
    base = tmp_path_factory.mktemp("voc")
    build_fmnist_voc(base / "fmnist-voc-quick", fmnist_root, quick=True, show_progress=False)
    return base
