"""A paper table's frame from its columns: the published rows as printed, then the measured
rows (or a `<ckpt>` row whose cells say how to measure them), with the notes every table
carries. Below tables.py and gap_table.py, which both build on it."""

from __future__ import annotations

import pandas as pd

from dcbench.report import published as pub
from dcbench.report.measured import Column, MeasuredRow
from dcbench.report.table import PLACEHOLDER_CKPT, FillCommand, Table


def value_note(best: bool) -> str:
    if best:
        return ("Cells: best-epoch value (records of tasks without epochs show their final "
                "value).")
    return ("Cells: final value. The paper reports the best epoch on val; `dcbench report "
            "--best` shows that.")


STD_NOTE = ("Measured cells with ± are mean ± sample standard deviation (ddof=1) over seeds; "
            "a cell without ± comes from one seed.")


def assemble(name: str, title: str, columns: list[Column], published: list[pub.PublishedRow],
             rows: list[MeasuredRow], best: bool, notes: list[str] | None = None,
             lead: tuple[str, ...] = ()) -> Table:
    """Published rows, then measured rows (or a `<ckpt>` row when there are none)."""
    values = [c.label for c in columns]
    has_measured = bool(rows)
    if not rows:
        rows = [placeholder_row(columns, lead)]
    data, fill = [], {}
    for p in published:
        data.append({"method": p.method, "source": f"published ({p.source})",
                     **{k: p.lead.get(k, "") for k in lead},
                     **{c: p.values.get(c, "") for c in values}})
    for row in rows:
        for column, cmd in row.fill.items():
            fill[(len(data), column)] = cmd
        data.append({"method": row.label, "source": "measured",
                     **{k: row.lead.get(k, "") for k in lead},
                     **{c: row.cells.get(c, "") for c in values}})
    frame = pd.DataFrame(data, columns=["method", "source", *lead, *values], dtype=object)
    all_notes = [value_note(best), STD_NOTE, *(notes or [])]
    all_notes += list(dict.fromkeys(n for row in rows for n in row.notes))
    commands = list(dict.fromkeys(c for row in rows for c in row.commands))
    return Table(name=name, title=title, frame=frame.fillna(""), value_columns=values,
                 notes=all_notes, commands=commands, fill=fill,
                 covers={(c.task, c.metric) for c in columns}, has_measured=has_measured)


def placeholder_row(columns: list[Column], lead: tuple[str, ...]) -> MeasuredRow:
    """The measured row of a table nothing has filled yet: every cell's command."""
    row = MeasuredRow(label=PLACEHOLDER_CKPT, ckpt=PLACEHOLDER_CKPT, lead=dict.fromkeys(lead, ""))
    for col in columns:
        if col.fillable:
            row.fill[col.label] = FillCommand(col.task, PLACEHOLDER_CKPT, col.setting,
                                              col.fill_options)
    return row
