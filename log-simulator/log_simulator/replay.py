"""Replay a Numenta Anomaly Benchmark (NAB) series as log events.

A NAB file is a CSV with a ``timestamp,value`` header and rows like ``2014-04-01 00:00:00,21.3``.
Each row becomes one ``LogEvent``: ``latency_ms`` = value, ``error_rate`` = 0.0, ``service`` = the file
name's stem, ``timestamp`` = the row's time as ISO-8601 UTC (NAB times have no zone: read as UTC), in
timestamp order (rows with equal times keep their file order). ``label`` is ``normal``, or ``nab_window``
inside one of the file's anomaly windows when NAB's ``combined_windows.json`` is given.

Rows that cannot be read (wrong field count, unparseable time, a value that is not a finite number) are
reported with their line number and skipped. A negative value refuses the whole file: a latency cannot be
negative, and clamping or shifting it would silently replay different data.
"""

import csv
import json
import logging
import math
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from eventbus import LABEL_NORMAL, LogEvent, time_cell_seconds
from log_simulator.errors import ReplayFileError

log = logging.getLogger(__name__)

NAB_WINDOW = "nab_window"
_REPORTED_BAD_ROWS = 20  # past this many, bad rows are only counted


@dataclass(frozen=True)
class ReplayRow:
    line: int
    timestamp: datetime
    value: float


@dataclass(frozen=True)
class BadRow:
    line: int
    reason: str


@dataclass
class ReplaySeries:
    """One NAB file, read and checked: good rows in timestamp order, bad rows, anomaly windows."""

    path: Path
    service: str
    rows: list[ReplayRow]
    bad_rows: list[BadRow] = field(default_factory=list)
    windows: list[tuple[datetime, datetime]] = field(default_factory=list)

    def offsets_s(self) -> list[float]:
        """Seconds from the first row to each row: when each event is due at speed 1."""
        first = self.rows[0].timestamp
        return [(row.timestamp - first).total_seconds() for row in self.rows]

    def label_for(self, moment: datetime) -> str:
        return NAB_WINDOW if any(start <= moment <= end for start, end in self.windows) else LABEL_NORMAL

    def events(self, seed: int | None = None) -> Iterator[LogEvent]:
        """One event per good row, in order; ids are uuid4, or reproducible from ``seed``."""
        rng = random.Random(seed)
        for row in self.rows:
            event_id = uuid.uuid4() if seed is None else uuid.UUID(int=rng.getrandbits(128), version=4)
            yield LogEvent(
                event_id=str(event_id),
                timestamp=row.timestamp.isoformat(),
                service=self.service,
                latency_ms=row.value,
                error_rate=0.0,
                label=self.label_for(row.timestamp),
            )


def parse_time(text: str) -> datetime:
    """A NAB time (``2014-04-01 00:00:00`` or any ISO-8601 form, or epoch seconds or ms as a number) as an
    aware UTC datetime."""
    return datetime.fromtimestamp(time_cell_seconds(text), tz=UTC)


def read_nab_csv(path: Path) -> ReplaySeries:
    """Read and check a NAB CSV; raise ``ReplayFileError`` when the file cannot be replayed at all."""
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise ReplayFileError(f"cannot open replay file {path}: {exc.strerror}") from None
    rows: list[ReplayRow] = []
    bad_rows: list[BadRow] = []
    with handle:
        try:
            _read_rows(path, csv.reader(handle), rows, bad_rows)
        except (UnicodeDecodeError, csv.Error) as exc:
            raise ReplayFileError(f"{path}: not a readable CSV file: {exc}") from None
    for bad in bad_rows[:_REPORTED_BAD_ROWS]:
        log.warning("%s: line %d skipped: %s", path, bad.line, bad.reason)
    if len(bad_rows) > _REPORTED_BAD_ROWS:
        log.warning("%s: %d more bad lines skipped", path, len(bad_rows) - _REPORTED_BAD_ROWS)
    if not rows:
        raise ReplayFileError(f"{path}: no usable rows ({len(bad_rows)} bad)")
    rows.sort(key=lambda row: row.timestamp)  # stable: equal times keep file order
    return ReplaySeries(path=path, service=path.stem, rows=rows, bad_rows=bad_rows)


def read_nab_windows(labels_path: Path, csv_path: Path) -> list[tuple[datetime, datetime]]:
    """The anomaly windows of ``csv_path`` from NAB's ``combined_windows.json`` (keys like ``dir/file.csv``)."""
    try:
        data = json.loads(labels_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ReplayFileError(f"cannot open labels file {labels_path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ReplayFileError(f"{labels_path}: not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ReplayFileError(f"{labels_path}: expected a JSON object of file name -> windows")
    matches = [key for key in data if Path(key).name == csv_path.name]
    if not matches:
        raise ReplayFileError(f"{labels_path}: no windows listed for {csv_path.name}")
    if len(matches) > 1:
        # Same file name in several NAB folders: pick the key that matches most of the path.
        matches.sort(key=lambda key: _common_suffix(Path(key).parts, csv_path.parts), reverse=True)
    windows: list[tuple[datetime, datetime]] = []
    for window in data[matches[0]]:
        try:
            start, end = (parse_time(str(moment)) for moment in window)
        except (TypeError, ValueError):
            raise ReplayFileError(f"{labels_path}: {matches[0]}: window {window!r} is not [start, end]") from None
        windows.append((start, end))
    return windows


def load_replay(csv_path: Path, labels_path: Path | None = None) -> ReplaySeries:
    series = read_nab_csv(csv_path)
    if labels_path is not None:
        series.windows = read_nab_windows(labels_path, csv_path)
    return series


def _read_rows(path: Path, reader: Any, rows: list[ReplayRow], bad_rows: list[BadRow]) -> None:
    """Append each good row to ``rows`` and each unreadable one to ``bad_rows``."""
    header = [name.strip().lower() for name in next(reader, [])]
    if "timestamp" not in header or "value" not in header:
        raise ReplayFileError(f"{path}: line 1 must be a header with 'timestamp' and 'value' columns")
    time_col, value_col = header.index("timestamp"), header.index("value")
    for record in reader:
        line = reader.line_num
        if not record or all(not cell.strip() for cell in record):
            continue  # blank line
        if len(record) != len(header):
            bad_rows.append(BadRow(line, f"{len(record)} fields, expected {len(header)}"))
            continue
        try:
            moment = parse_time(record[time_col])
        except ValueError:
            bad_rows.append(BadRow(line, f"unreadable timestamp {record[time_col]!r}"))
            continue
        try:
            value = float(record[value_col])
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            bad_rows.append(BadRow(line, f"value {record[value_col]!r} is not a finite number"))
            continue
        if value < 0:
            raise ReplayFileError(
                f"{path}: line {line}: value {value} is negative, and latency_ms cannot be; "
                "this file is not a latency series (nothing was sent)"
            )
        rows.append(ReplayRow(line, moment, value))


def _common_suffix(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n]:
        n += 1
    return n
