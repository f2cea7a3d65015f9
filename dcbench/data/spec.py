"""What a named dataset is (DatasetSpec) and what its validation found (ValidationReport):
declared by each loader, collected by catalog.py, looked up through registry.py."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch.utils.data import Dataset


@dataclass
class ValidationReport:
    """What a dataset root holds: image counts per split (and per class where labelled)."""

    name: str
    root: Path
    splits: dict[str, int]
    classes: list[str] = field(default_factory=list)
    per_class: dict[str, dict[str, int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def lines(self, max_classes: int = 20) -> list[str]:
        out = [f"{self.name} at {self.root}"]
        for split, n in self.splits.items():
            out.append(f"  {split}: {n} images")
            counts = self.per_class.get(split, {})
            if counts:
                shown = list(counts.items())
                if len(shown) > max_classes:
                    vals = list(counts.values())
                    out.append(f"    {len(shown)} classes, {min(vals)}-{max(vals)} images each")
                else:
                    out.extend(f"    {c}: {k}" for c, k in shown)
        out.extend(f"  note: {n}" for n in self.notes)
        return out


@dataclass
class DatasetSpec:
    """A registry entry. `build(root, split, transform)` returns a torch Dataset whose items
    are (image, label) with label -1 where the data are unlabelled, or None for an image that
    cannot be read (the loader skips and counts those)."""

    name: str
    description: str
    splits: tuple[str, ...]
    size: str                      # 'large' (224 px) or 'small' (32 px) inputs
    native: int                    # native image side, for the small transforms
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    labelled: bool
    validate: Callable[[Path], ValidationReport]
    build: Callable[..., Dataset]
    default_root: Path | None = None
    needs_root_hint: str = ""
    # embedded sets only: builds the set at a root (where none is found, on first use)
    builder: Callable[[Path], Path] | None = None
    quick_variant: str | None = None     # the smaller twin that --quick runs use
