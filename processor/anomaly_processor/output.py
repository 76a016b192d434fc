"""What the processor shows on stdout: a line per event at low rates, a periodic summary at high rates.

This is deliberate user-facing output (diagnostics go to ``logging`` on stderr). Anomalies are marked
``⚠ ANOMALY`` and, on a terminal only, coloured red; text from messages is stripped of control characters
so a crafted event cannot drive the terminal.
"""

import os
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

import orjson

from anomaly_processor.ml_client import Score
from anomaly_processor.records import ConsumedRecord
from anomaly_processor.settings import PrintMode
from eventbus import LogEvent
from streaming_detector.explain import explanation_text

ANOMALY_MARK = "⚠ ANOMALY"
INCIDENT_MARK = "▲ INCIDENT"
DEAD_LETTER_MARK = "✗ DEAD-LETTER"
_RED = "\x1b[1;31m"
_YELLOW = "\x1b[33m"
_RESET = "\x1b[0m"
_RATE_WINDOW_S = 1.0
_PREVIEW_BYTES = 100
_ATOMIC_WRITE_BYTES = 4096  # PIPE_BUF on Linux
# C0 controls, DEL and C1 controls (which include the 8-bit CSI) become U+FFFD.
_CONTROL_CHARS = dict.fromkeys([*range(0x00, 0x20), *range(0x7F, 0xA0)], "\ufffd")


def printable(text: str) -> str:
    return text.translate(_CONTROL_CHARS)


def event_line(event: LogEvent, score: Score) -> str:
    """``Log: {...}, Anomaly: True (score 11.7, model v1)``, as the original design printed it, plus the score.

    The event is shown with the fields the producer sent, as sent. An explained verdict shows its severity (the
    one scale: 1 is the threshold) and why instead of the raw score:
    ``Anomaly: True (severity 1.62: latency 1,480 ms, usually 190–260 ms; incident inc-…; model v1)``.
    """
    log = printable(orjson.dumps(event.as_sent()).decode())
    why = score.explanation
    if why is None:
        detail = f"score {score.score:.4g}"
    else:
        detail = f"severity {why['severity']:.2f}: {printable(explanation_text(why))}"
        if score.incident_id:
            detail += f"; incident {score.incident_id}"
    text = f"Log: {log}, Anomaly: {score.anomaly} ({detail}, model {printable(score.model_version)})"
    return f"{ANOMALY_MARK} {text}" if score.anomaly else text


def incident_line(record: Mapping[str, Any]) -> str:
    """``▲ INCIDENT opened inc-… payment: latency 1,480 ms, usually 190–260 ms (1 alert, severity 1.62)``"""
    why = record.get("explanation") or {}
    alerts = record["alerts"]
    text = (
        f"{INCIDENT_MARK} {record['event']} {record['incident_id']} {printable(record['service'])}: "
        f"{printable(explanation_text(why) if why else record['signal'])} "
        f"({alerts} alert{'s' if alerts != 1 else ''}, peak severity {record['peak_severity']:.2f}"
    )
    if record.get("resolution"):
        text += f", resolved: {record['resolution']}"
    return text + ")"


def dead_letter_line(record: ConsumedRecord, reason: str) -> str:
    """``✗ DEAD-LETTER logs[1]@42: latency_ms: Input should be ... | value: {...``"""
    if record.value is None:
        preview = "(null)"
    else:
        preview = printable(record.value[:_PREVIEW_BYTES].decode("utf-8", "replace"))
        preview += "…" if len(record.value) > _PREVIEW_BYTES else ""
    where = f"{record.topic}[{record.partition}]@{record.offset}"
    return f"{DEAD_LETTER_MARK} {where}: {printable(reason)} | value: {preview}"


class Printer:
    """Counts what the processor did and prints it according to ``mode``.

    ``auto`` prints a line per event while fewer than ``auto_rate`` events per second arrive (over the last
    second) and a summary every ``summary_interval_s`` for the periods it did not; ``events`` always prints
    lines; ``summary`` only summaries; ``quiet`` nothing.
    """

    def __init__(
        self,
        mode: PrintMode,
        *,
        summary_interval_s: float = 5.0,
        auto_rate: float = 50.0,
        stream: TextIO | None = None,
        color: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        label: str = "",
    ) -> None:
        self.mode = mode
        self.label = f"[{label}] " if label else ""  # on notices and summaries, e.g. "[worker 1] "
        self.summary_interval_s = summary_interval_s
        self.auto_rate = auto_rate
        self.stream = stream if stream is not None else sys.stdout
        self.color = color if color is not None else _isatty(self.stream)
        self._clock = clock
        self.consumed = 0
        self.verdicts = 0
        self.anomalies = 0
        self.dead_lettered = 0
        self.retries = 0
        self._recent: deque[tuple[float, int]] = deque()
        self._last_summary_at = clock()
        self._consumed_at_last_summary = 0
        self._suppressed = False  # auto mode left events unprinted since the last summary
        self._told_about_summary = False

    def batch(
        self,
        consumed: int,
        verdicts: Sequence[tuple[LogEvent, Score]],
        dead_letters: Sequence[tuple[ConsumedRecord, str]],
    ) -> None:
        """Report one handled batch: ``consumed`` records became ``verdicts`` and ``dead_letters``."""
        now = self._clock()
        self.consumed += consumed
        self.verdicts += len(verdicts)
        self.anomalies += sum(1 for _, score in verdicts if score.anomaly)
        self.dead_lettered += len(dead_letters)
        if self._print_lines(now, consumed):
            lines = [self._paint(dead_letter_line(r, reason), _YELLOW) for r, reason in dead_letters]
            lines.extend(self._paint(event_line(e, s), _RED) if s.anomaly else event_line(e, s) for e, s in verdicts)
            if lines:
                self._write("\n".join(lines))
        self.tick(now)

    def incidents(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Report incident records (opened and resolved always, updated only with the per-event lines)."""
        if self.mode == "quiet":
            return
        shown = [r for r in records if r["event"] != "updated" or self.mode == "events"]
        if shown:
            self._write("\n".join(self._paint(self.label + incident_line(r), _RED) for r in shown))

    def retry(self, message: str) -> None:
        """Report a retry (ML service or Kafka unavailable) with the wait that follows."""
        self.retries += 1
        self.notice(message)

    def notice(self, message: str) -> None:
        if self.mode != "quiet":
            self._write(self.label + printable(message))

    def tick(self, now: float | None = None) -> None:
        """Print the summary if one is due; call it regularly, even when idle."""
        now = self._clock() if now is None else now
        if now - self._last_summary_at < self.summary_interval_s:
            return
        due = self.mode == "summary" and self.consumed > self._consumed_at_last_summary
        if due or (self.mode == "auto" and self._suppressed):
            self._write(self.label + self.summary_line(now))
        self._last_summary_at = now
        self._consumed_at_last_summary = self.consumed
        self._suppressed = False

    def summary_line(self, now: float | None = None) -> str:
        now = self._clock() if now is None else now
        elapsed = max(now - self._last_summary_at, 1e-9)
        fresh = self.consumed - self._consumed_at_last_summary
        return (
            f"[summary] consumed={self.consumed} (+{fresh} in {elapsed:.1f}s, {fresh / elapsed:.0f}/s) "
            f"verdicts={self.verdicts} anomalies={self.anomalies} dead_lettered={self.dead_lettered} "
            f"retries={self.retries}"
        )

    def close(self) -> None:
        """A last line with the totals (not in quiet mode)."""
        if self.mode != "quiet":
            self._write(
                f"{self.label}[stopped] consumed={self.consumed} verdicts={self.verdicts} anomalies={self.anomalies} "
                f"dead_lettered={self.dead_lettered} retries={self.retries}"
            )

    def _print_lines(self, now: float, consumed: int) -> bool:
        if self.mode == "events":
            return True
        if self.mode != "auto":
            return False
        self._recent.append((now, consumed))
        while self._recent and now - self._recent[0][0] > _RATE_WINDOW_S:
            self._recent.popleft()
        rate = sum(n for _, n in self._recent) / _RATE_WINDOW_S
        if rate <= self.auto_rate:
            return True
        self._suppressed = True
        if not self._told_about_summary:
            self._told_about_summary = True
            self._write(
                f"{self.label}High rate (~{rate:.0f} events/s): printing a summary every {self.summary_interval_s:g}s "
                "instead of a line per event (PRINT_MODE=events prints every event)."
            )
        return False

    def _paint(self, line: str, colour: str) -> str:
        return f"{colour}{line}{_RESET}" if self.color else line

    def _write(self, text: str) -> None:
        # Several workers may share this stdout: whole lines in writes of at most PIPE_BUF bytes stay unmixed.
        if len(text) < _ATOMIC_WRITE_BYTES // 4:
            self.stream.write(text + "\n")
            self.stream.flush()
            return
        chunk: list[str] = []
        size = 0
        for line in text.split("\n"):
            length = len(line.encode()) + 1
            if chunk and size + length > _ATOMIC_WRITE_BYTES:
                self.stream.write("\n".join(chunk) + "\n")
                self.stream.flush()
                chunk, size = [], 0
            chunk.append(line)
            size += length
        self.stream.write("\n".join(chunk) + "\n")
        self.stream.flush()


def _isatty(stream: TextIO) -> bool:
    """Colour on a terminal; ``FORCE_COLOR`` (set by ``make up`` when it follows the log on one) and
    ``NO_COLOR`` (https://no-color.org) override the guess."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
