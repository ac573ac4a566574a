"""Timing and table printing shared by the benchmarks."""

from __future__ import annotations

import statistics
import time
from typing import Callable


def time_interleaved(fns: dict[str, Callable[[], None]], rounds: int = 10, warmup: int = 3) -> dict[str, float]:
    """Median seconds per call of each function, calls interleaved so drift hits all alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - t0)
    return {name: statistics.median(s) for name, s in samples.items()}


def print_table(title: str, rows: list[dict]) -> None:
    """A markdown table, so the output can be pasted into the README as is."""
    if not rows:
        return
    cols = list(rows[0])
    fmt = lambda v: f"{v:.3g}" if isinstance(v, float) else str(v)  # noqa: E731
    print(f"\n### {title}\n")
    print("| " + " | ".join(cols) + " |")
    print("| " + " | ".join("---" for _ in cols) + " |")
    for row in rows:
        print("| " + " | ".join(fmt(row.get(c, "")) for c in cols) + " |")
