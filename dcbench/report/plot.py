"""A figure of the report and how it is written: a PNG under figures/, or, with nothing to
draw, no file and the reason why (report.md says why it is missing)."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

from matplotlib.figure import Figure

from dcbench.atomic import atomic_write_bytes


@dataclass
class Plot:
    name: str                        # file stem under figures/
    title: str
    figure: Figure | None
    skipped: str = ""                # why there is no figure
    notes: list[str] = field(default_factory=list)

    def save(self, folder: Path) -> Path | None:
        """Write figures/<name>.png, or remove a stale one when there is nothing to draw."""
        path = folder / f"{self.name}.png"
        if self.figure is None:
            path.unlink(missing_ok=True)
            return None
        buf = io.BytesIO()
        self.figure.savefig(buf, format="png", dpi=100)
        atomic_write_bytes(path, buf.getvalue())
        return path
