"""``BATCH_TIMINGS=1``: one log line per batch saying where its time went, to find what a latency tail waited for.

Each batch handled logs (logger ``anomaly_processor.timings``, INFO) a line such as::

    batch of 2000 in 231.4 ms: poll 1.6, decode 30.3, score 99.8 (ML hop 19.7), deliver 45.3, commit 0.1,
    state 1.7; GC 1 collection 10.2 ms; CPU 57.4 ms, waited for a core 120.3 ms

``score`` is the per-service context and the ML hop together, ``deliver`` producing and waiting for Kafka's
acknowledgements, ``state`` saving the changelog. ``waited for a core`` is how long the loop's thread was ready
to run but not running (Linux's ``/proc/thread-self/schedstat``; left out where there is none): when it is most
of a slow batch, the machine's cores were busy with other work, not the processor slow. ``GC`` sums the
garbage collections during the batch (``gc.callbacks``). Off by default; on, it costs a few microseconds a batch.
"""

import gc
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

log = logging.getLogger("anomaly_processor.timings")

SCHEDSTAT = "/proc/thread-self/schedstat"
_NOTHING: AbstractContextManager[None] = nullcontext()
PHASES = ("poll", "restore", "decode", "score", "deliver", "commit", "state", "print")


def run_queue_seconds(path: str = SCHEDSTAT) -> float | None:
    """Seconds the calling thread has waited on a run queue since it started; None where the kernel does not say."""
    try:
        with open(path) as stat:
            return int(stat.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


class GcClock:
    """Collections of the garbage collector and the time they took, summed (a ``gc.callbacks`` entry)."""

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.count += 1
            self.seconds += time.perf_counter() - self._started


class BatchTimings:
    """Times the phases of one batch after another; ``end`` logs the batch's line.

    ``ml_seconds``: the time spent so far waiting for the ML service (``HttpScorer.waited_s``), if known.
    """

    def __init__(self, ml_seconds: Callable[[], float] | None = None, logger: logging.Logger = log) -> None:
        self._ml_seconds = ml_seconds
        self._log = logger
        self._gc = GcClock()
        gc.callbacks.append(self._gc)
        self._phases: dict[str, float] = {}
        self._start: tuple[float, float, float | None, int, float, float] = (0.0, 0.0, None, 0, 0.0, 0.0)

    def close(self) -> None:
        if self._gc in gc.callbacks:
            gc.callbacks.remove(self._gc)

    def begin(self) -> None:
        self._phases = dict.fromkeys(PHASES, 0.0)
        ml = self._ml_seconds() if self._ml_seconds else 0.0
        self._start = (
            time.perf_counter(),
            time.thread_time(),
            run_queue_seconds(),
            self._gc.count,
            self._gc.seconds,
            ml,
        )

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self._phases[name] = self._phases.get(name, 0.0) + time.perf_counter() - started

    def end(self, records: int) -> str | None:
        """Log (and return) the line of the batch begun last; nothing for a poll that handled no record."""
        if records <= 0:
            return None
        wall0, cpu0, queue0, collections0, gc0, ml0 = self._start
        total = time.perf_counter() - wall0
        parts = [f"{name} {seconds * 1000:.1f}" for name, seconds in self._phases.items() if seconds]
        if self._ml_seconds is not None and self._phases.get("score"):
            ml = f" (ML hop {(self._ml_seconds() - ml0) * 1000:.1f})"
            parts = [part + ml if part.startswith("score ") else part for part in parts]
        phases = ", ".join(parts)
        collections = self._gc.count - collections0
        line = f"batch of {records} in {total * 1000:.1f} ms: {phases}"
        if collections:
            plural = "s" if collections > 1 else ""
            line += f"; GC {collections} collection{plural} {(self._gc.seconds - gc0) * 1000:.1f} ms"
        line += f"; CPU {(time.thread_time() - cpu0) * 1000:.1f} ms"
        queue = run_queue_seconds()
        if queue is not None and queue0 is not None:
            line += f", waited for a core {(queue - queue0) * 1000:.1f} ms"
        self._log.info(line)
        return line


class NoTimings:
    """What the loop calls when ``BATCH_TIMINGS`` is off: nothing measured, nothing logged."""

    def begin(self) -> None:
        pass

    def phase(self, name: str) -> AbstractContextManager[None]:
        return _NOTHING

    def end(self, records: int) -> str | None:
        return None

    def close(self) -> None:
        pass
