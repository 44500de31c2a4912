"""Helpers shared by the benchmarks: timing, percentiles, the result table."""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable


@dataclasses.dataclass
class Row:
    name: str
    unit: str
    median: float
    p95: float
    baseline: str = ""
    baseline_median: float | None = None
    note: str = ""

    @property
    def ratio(self) -> str:
        if self.baseline_median in (None, 0):
            return ""
        return f"{self.median / self.baseline_median:.2f}x"


@dataclasses.dataclass
class BenchResult:
    rows: list[Row]
    metrics: dict


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * pct / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def time_calls(func: Callable[[], object], n: int, warmup: int = 3) -> list[float]:
    """Milliseconds per call, n samples."""
    for _ in range(warmup):
        func()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        func()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def summarize(samples: list[float]) -> tuple[float, float]:
    return statistics.median(samples), percentile(samples, 95)


def format_table(rows: list[Row]) -> str:
    header = ["benchmark", "unit", "median", "p95", "baseline", "base median", "ratio", "note"]
    body = [[r.name, r.unit, _fmt(r.median), _fmt(r.p95), r.baseline,
             "" if r.baseline_median is None else _fmt(r.baseline_median), r.ratio, r.note] for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body, strict=False)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=False))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)) for row in body]
    return "\n".join(lines)


def _fmt(v: float) -> str:
    if v != v:  # NaN
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 1:
        return f"{v:.2f}"
    return f"{v:.4f}"
