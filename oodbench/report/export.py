"""Exports of the report's tables: LaTeX (booktabs, best per column in bold), Markdown, CSV.

The numbers come from the numeric tables (store values), formatted once here; the best value of
each column (within each OOD set for tables with one block of rows per OOD set) is the maximum, or
the minimum for error-type metrics (FPR, detection error).
"""

from __future__ import annotations

from typing import Collection

import pandas as pd

from oodbench.report.tables import HYGIENE_MARK, LOWER_IS_BETTER

LOWER_LABELS = {"FPR@95TPR(ID+)", "FPR@95TPR(OOD+)", "Det. error"}


def _lower_is_better(column) -> bool:
    name = column[-1] if isinstance(column, tuple) else column
    return name in LOWER_IS_BETTER or name in LOWER_LABELS


def best_mask(table: pd.DataFrame, digits: int = 4) -> pd.DataFrame:
    """True where a cell holds its column's best value at the shown precision (ties all marked).

    With two-level rows (OOD set, method), the best is taken within each OOD set's block of rows,
    as in the BAL paper's tables: methods compete on the same OOD data, not across data sets.
    """
    blocks = table.groupby(level=0, sort=False) if isinstance(table.index, pd.MultiIndex) else [(None, table)]
    mask = pd.DataFrame(False, index=table.index, columns=table.columns)
    for _, block in blocks:
        for column in table.columns:
            values = pd.to_numeric(block[column], errors="coerce").round(digits)
            if values.notna().any():
                best = values.min() if _lower_is_better(column) else values.max()
                mask.loc[block.index, column] = (values == best).to_numpy()
    return mask


def _label(value) -> str:
    return " / ".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _formatted(table: pd.DataFrame, digits: int, flagged: Collection[tuple] = ()) -> pd.DataFrame:
    """Cell texts; a cell whose (row, column group) is in ``flagged`` gets the data-hygiene mark."""
    text = table.map(lambda v: "" if pd.isna(v) else f"{v:.{digits}f}")
    for row, column in ((r, c) for r in table.index for c in table.columns):
        group = column[0] if isinstance(column, tuple) else column
        if (row, group) in flagged and text.loc[row, column]:
            text.loc[row, column] += HYGIENE_MARK
    return text


def _latex_escape(text: str) -> str:
    for raw, escaped in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#")):
        text = text.replace(raw, escaped)
    return text


def to_latex(table: pd.DataFrame, caption: str, digits: int = 4, flagged: Collection[tuple] = ()) -> str:
    """A booktabs ``tabular`` (with two header rows for two-level columns), best values bold, cells
    in ``flagged`` ((row, column group) pairs) marked."""
    text, best = _formatted(table, digits, flagged), best_mask(table, digits)
    two_level = isinstance(table.columns, pd.MultiIndex)
    lines = [f"% {caption}", r"\begin{tabular}{l" + "r" * len(table.columns) + "}", r"\toprule"]
    index_name = _latex_escape(str(table.index.name or ""))
    if two_level:
        groups = list(dict.fromkeys(c[0] for c in table.columns))
        spans = [sum(1 for c in table.columns if c[0] == g) for g in groups]
        lines.append(" & ".join([""] + [rf"\multicolumn{{{n}}}{{c}}{{{_latex_escape(str(g))}}}" for g, n in zip(groups, spans, strict=True)]) + r" \\")
        start = 2
        rules = []
        for n in spans:
            rules.append(rf"\cmidrule(lr){{{start}-{start + n - 1}}}")
            start += n
        lines.append(" ".join(rules))
        lines.append(" & ".join([index_name] + [_latex_escape(str(c[1])) for c in table.columns]) + r" \\")
    else:
        lines.append(" & ".join([index_name] + [_latex_escape(_label(c)) for c in table.columns]) + r" \\")
    lines.append(r"\midrule")
    for row in table.index:
        cells = [rf"\textbf{{{text.loc[row, c]}}}" if best.loc[row, c] else text.loc[row, c] for c in table.columns]
        lines.append(" & ".join([_latex_escape(_label(row))] + cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def to_markdown(table: pd.DataFrame, caption: str, digits: int = 4, flagged: Collection[tuple] = ()) -> str:
    """A GitHub-flavoured Markdown table, best values bold, column groups joined into the header,
    cells in ``flagged`` ((row, column group) pairs) marked."""
    text, best = _formatted(table, digits, flagged), best_mask(table, digits)
    header = [str(table.index.name or "")] + [_label(c) for c in table.columns]
    lines = [f"**{caption}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table.index:
        cells = [f"**{text.loc[row, c]}**" if best.loc[row, c] and text.loc[row, c] else text.loc[row, c] for c in table.columns]
        lines.append("| " + " | ".join([_label(row)] + cells) + " |")
    return "\n".join(lines) + "\n"
