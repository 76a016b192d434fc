"""Percentiles, ratios against the original design, the table printed on stdout and the JSON written beside it."""

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

Direction = Literal["higher", "lower"]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation between closest ranks; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def ratio(project: float | None, original: float | None, direction: Direction = "higher") -> float | None:
    """How many times better the project is: project/original for rates, original/project for costs."""
    if project is None or original is None or not math.isfinite(project) or not math.isfinite(original):
        return None
    numerator, denominator = (project, original) if direction == "higher" else (original, project)
    if denominator <= 0:
        return None
    return numerator / denominator


def rate_between(samples: Sequence[tuple[float, int]], low: int, high: int) -> float | None:
    """Events/s between the moments the count crossed ``low`` and ``high`` (samples: (seconds, count), sorted)."""
    t_low = crossing_time(samples, low)
    t_high = crossing_time(samples, high)
    if t_low is None or t_high is None or t_high <= t_low:
        return None
    return (high - low) / (t_high - t_low)


def crossing_time(samples: Sequence[tuple[float, int]], count: int) -> float | None:
    """When the count reached ``count``, interpolated linearly between the two samples around it."""
    previous_t, previous_n = 0.0, 0
    for t, n in samples:
        if n >= count:
            if n == previous_n:
                return t
            return previous_t + (t - previous_t) * (count - previous_n) / (n - previous_n)
        previous_t, previous_n = t, n
    return None


@dataclass
class Row:
    """One line of the table: a metric for the project, for the original design, and its target."""

    metric: str
    unit: str
    project: float | None
    original: float | None = None
    direction: Direction = "higher"
    target: str = ""
    met: bool | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        return ratio(self.project, self.original, self.direction)


def meets(value: float | None, minimum: float | None = None, maximum: float | None = None) -> bool | None:
    """Whether ``value`` is within the target; None when it was not measured."""
    if value is None or not math.isfinite(value):
        return None
    if minimum is not None and value < minimum:
        return False
    return not (maximum is not None and value > maximum)


def _number(value: float | None, unit: str) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    if unit == "x" and abs(value) < 100:
        return f"{value:,.2f}"
    if unit in ("ms", "MiB", "%") or abs(value) < 100:
        return f"{value:,.1f}"
    return f"{value:,.0f}"


def render_table(rows: Sequence[Row]) -> str:
    """The table ``metric | project | original | ratio | target | met?`` as aligned plain text."""
    header = ("metric", "project", "original", "ratio", "target", "met?")
    lines = [header]
    for row in rows:
        ratio_text = "-" if row.ratio is None else f"{row.ratio:,.1f}x"
        met_text = {True: "yes", False: "NO", None: "-"}[row.met]
        lines.append(
            (
                f"{row.metric} ({row.unit})",
                _number(row.project, row.unit),
                _number(row.original, row.unit),
                ratio_text,
                row.target,
                met_text,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for index, line in enumerate(lines):
        cells = [line[0].ljust(widths[0])] + [
            cell.rjust(width) for cell, width in zip(line[1:], widths[1:], strict=True)
        ]
        out.append(" | ".join(cells))
        if index == 0:
            out.append("-+-".join("-" * width for width in widths))
    notes = [f"  {row.metric}: {row.note}" for row in rows if row.note]
    if notes:
        out.append("")
        out.append("notes:")
        out.extend(notes)
    return "\n".join(out)


def write_json(path: Path, rows: Sequence[Row], details: dict[str, Any]) -> None:
    """The table's figures (with ratios) and every step's raw measurements, as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = [{**asdict(row), "ratio": row.ratio} for row in rows]
    document = _plain({"table": table, "details": details})
    path.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n")


def _plain(value: Any) -> Any:
    """JSON-ready: NaN/inf (a figure not measured) become null, numpy values plain numbers and lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return _plain(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
