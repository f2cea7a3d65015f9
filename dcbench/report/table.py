"""The Table every report function returns, and its md / csv / tex renderings.

A table's frame holds display strings (published values as printed, measured values already
formatted). Empty measured cells carry the `dcbench eval` command that would fill them: the
csv holds it in the cell, the markdown marks the cell with a letter that points to the command
listed under the table (whole commands would drown the numbers), the LaTeX shows a dash and
lists it in a comment, so the reader of any rendering knows how to complete the table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from dcbench.atomic import atomic_write_text

PLACEHOLDER_CKPT = "<ckpt>"


@dataclass(frozen=True)
class FillCommand:
    """The eval call that would produce one missing cell."""

    task: str
    ckpt: str
    setting: str | None = None
    options: tuple[str, ...] = ()           # extra `--set key=value` pairs

    def __str__(self) -> str:
        return join_command(self.task, self.ckpt, [self.setting] if self.setting else [],
                            self.options)


def join_command(task: str, ckpt: str, settings: list[str], options: tuple[str, ...]) -> str:
    ckpt = ckpt if ckpt == PLACEHOLDER_CKPT or " " not in ckpt else f"'{ckpt}'"
    parts = ["dcbench eval", f"--task {task}", f"--ckpt {ckpt}"]
    parts += [f"--setting {s}" for s in settings]
    parts += [f"--set {o}" for o in options]
    return " ".join(parts)


@dataclass
class Table:
    """A paper table: published rows beside measured rows, with where each number came from."""

    name: str                          # file stem under tables/
    title: str
    frame: pd.DataFrame                # str cells; columns "method", "source", lead..., values
    value_columns: list[str]
    notes: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)   # `command` of every record shown
    fill: dict[tuple[int, str], FillCommand] = field(default_factory=dict)
    covers: set[tuple[str, str]] = field(default_factory=set)   # (task, metric) it shows
    has_measured: bool = False         # False: published rows and a `<ckpt>` row only

    def shown(self) -> pd.DataFrame:
        """The frame as md/csv show it: empty measured cells hold their fill command."""
        out = self.frame.copy()
        for (row, column), cmd in self.fill.items():
            out.iat[row, out.columns.get_loc(column)] = str(cmd)
        return out

    def cell(self, method: str, column: str, source: str = "measured") -> str:
        """The shown cell of the first row whose method and source (prefix) match."""
        shown = self.shown()
        hit = shown[(shown["method"] == method) & shown["source"].str.startswith(source)]
        if hit.empty:
            raise KeyError(f"no {source} row '{method}' in {self.name}")
        return hit.iloc[0][column]

    def fill_groups(self) -> dict[tuple, list[str]]:
        """(task, checkpoint, options) -> the missing settings, in table order."""
        grouped: dict[tuple, list[str]] = {}
        for cmd in self.fill.values():
            settings = grouped.setdefault((cmd.task, cmd.ckpt, cmd.options), [])
            if cmd.setting and cmd.setting not in settings:
                settings.append(cmd.setting)
        return grouped

    def fill_commands(self) -> list[str]:
        """One command per (task, checkpoint, options), with every missing setting."""
        return [join_command(task, ckpt, settings, options)
                for (task, ckpt, options), settings in self.fill_groups().items()]

    def fill_letter(self, cmd: FillCommand) -> str:
        """The marker an empty markdown cell shows: the letter of its command's group."""
        groups = list(self.fill_groups())
        return letter(groups.index((cmd.task, cmd.ckpt, cmd.options)))


def letter(i: int) -> str:
    """a, b, ..., z, aa, ab, ..."""
    out = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        out = chr(ord("a") + r) + out
    return out


def to_markdown(table: Table) -> str:
    """The table as a markdown pipe table; an empty measured cell shows `(x)`, the letter of
    the command under the table that fills it."""
    shown = table.frame

    def cell(r: int, c: str) -> str:
        if (r, c) in table.fill:
            return f"({table.fill_letter(table.fill[(r, c)])})"
        text = str(shown.iat[r, shown.columns.get_loc(c)]).replace("|", "\\|")
        return text.replace("<", "&lt;").replace(">", "&gt;")

    lines = ["| " + " | ".join(shown.columns) + " |",
             "|" + "|".join("---" for _ in shown.columns) + "|"]
    lines += ["| " + " | ".join(cell(r, c) for c in shown.columns) + " |"
              for r in range(len(shown))]
    return "\n".join(lines) + "\n"


def markdown_section(table: Table, heading: str = "##") -> str:
    """Title, table, notes, the commands that filled it and those that would fill the rest."""
    parts = [f"{heading} {table.title}\n", to_markdown(table)]
    if table.notes:
        parts.append("Notes:\n\n" + "".join(f"- {n}\n" for n in table.notes))
    if table.commands:
        parts.append("Filled by:\n\n" + "".join(f"- `{c}`\n" for c in table.commands))
    else:
        parts.append("Filled by: no measured record yet.\n")
    missing = table.fill_commands()
    if missing:
        parts.append("To fill the empty measured cells:\n\n"
                     + "".join(f"- ({letter(i)}) `{c}`\n" for i, c in enumerate(missing)))
    return "\n".join(parts)


def to_csv(table: Table) -> str:
    return table.shown().to_csv(index=False)


_TEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
                "±": r"$\pm$", "†": r"$^\dagger$", "·": r"$\cdot$"}


def tex_escape(text: str) -> str:
    return "".join(_TEX_ESCAPES.get(ch, ch) for ch in str(text))


def to_latex(table: Table) -> str:
    frame = table.frame
    lead = [c for c in frame.columns if c not in table.value_columns]
    spec = "l" * len(lead) + "r" * len(table.value_columns)
    lines = [f"% {tex_escape(table.title)}", f"\\begin{{tabular}}{{{spec}}}", "\\toprule",
             " & ".join(tex_escape(c) for c in frame.columns) + r" \\", "\\midrule"]
    for r in range(len(frame)):
        cells = []
        for c in frame.columns:
            text = frame.iat[r, frame.columns.get_loc(c)]
            cells.append("--" if (r, c) in table.fill else tex_escape(text))
        lines.append(" & ".join(cells) + r" \\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    lines += [f"% note: {note}" for note in table.notes]
    lines += [f"% to fill: {cmd}" for cmd in table.fill_commands()]
    return "\n".join(lines) + "\n"


def write_table(table: Table, folder: Path) -> dict[str, Path]:
    """tables/<name>.md, .csv and .tex; returns their paths by suffix."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for suffix, render in (("md", markdown_section), ("csv", to_csv), ("tex", to_latex)):
        path = folder / f"{table.name}.{suffix}"
        atomic_write_text(path, render(table))
        paths[suffix] = path
    return paths
