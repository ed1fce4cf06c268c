"""Plain-text and Markdown tables for every command's summaries and reports (stdlib only: the runtime and the CLI share it)."""
from __future__ import annotations

from typing import Optional, Sequence


def format_table(rows) -> str:
    """Plain aligned table: first row is the header; first column left-aligned, the rest right."""
    rows = [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(header: Sequence[str], rows, right_from: Optional[int] = None) -> list[str]:
    """Markdown table lines; columns from index `right_from` on are right-aligned (numbers)."""
    rule = ["---" if right_from is None or i < right_from else "---:" for i in range(len(header))]
    return (["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"]
            + ["| " + " | ".join(row) + " |" for row in rows])
