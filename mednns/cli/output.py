"""How the commands print: tables that never cut a value, JSON for scripts, figures that may be missing."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

console = Console()


def print_json(obj) -> None:
    """One JSON document on stdout (NaN as null), for scripts: `--json` of the browsing commands."""
    import json
    import math

    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if hasattr(v, "item"):  # numpy scalars
            return clean(v.item())
        return v

    click.echo(json.dumps(clean(obj), indent=2, default=str))


def print_table(title: str, columns: list[tuple[str, str]], rows: list[list[str]]) -> None:
    """A table that never cuts a value: rich's on a terminal (cells wrap, never "..."), plain aligned
    text when piped, whatever the width. `columns`: (header, "left" | "right")."""
    if console.is_terminal:
        table = Table(title=title)
        for name, justify in columns:
            table.add_column(name, justify=justify, overflow="fold")
        for row in rows:
            table.add_row(*row)
        console.print(table)
        return
    widths = [max([len(name), *(len(r[i]) for r in rows)]) for i, (name, _) in enumerate(columns)]

    def line(cells) -> str:
        return "  ".join(c.rjust(w) if j == "right" else c.ljust(w)
                         for c, w, (_, j) in zip(cells, widths, columns)).rstrip()

    click.echo(title)
    click.echo(line([name for name, _ in columns]))
    for row in rows:
        click.echo(line(row))


def figure(value, fmt: str) -> str:
    """A candidate's figure, or "-" where it has none (a pretrained network is not in the zoo's tables)."""
    import math

    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else fmt.format(value)


