"""How busy the machine's cores were during a latency run: Linux's CPU pressure (``/proc/pressure/cpu``), by second.

The "some" pressure of a second is the share of it in which at least one runnable task waited for a core. Near
100%, every core was taken and something queued for one the whole second: the latencies measured then say as much
about the other work on the machine as about the pipeline (docs/tuning.md, "a one-second stall at 20,000/s").
The benchmark's own processes count too, so compare runs, not absolute figures. Empty where the kernel has no PSI.
"""

import threading
import time

CPU_PRESSURE = "/proc/pressure/cpu"
SAMPLE_S = 0.1


def some_total_s(path: str = CPU_PRESSURE) -> float | None:
    """Seconds, since boot, during which some runnable task waited for a core; None without PSI."""
    try:
        with open(path) as stat:
            some = stat.readline()  # "some avg10=1.23 avg60=... avg300=... total=<microseconds>"
        return int(some.rsplit("total=", 1)[1]) / 1e6
    except (OSError, ValueError, IndexError):
        return None


class PressureSampler:
    """Samples the CPU pressure every ``SAMPLE_S`` in a thread, from ``start`` to ``stop``."""

    def __init__(self, path: str = CPU_PRESSURE, interval_s: float = SAMPLE_S) -> None:
        self._path = path
        self._interval_s = interval_s
        self._samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-pressure", daemon=True)

    def start(self) -> None:
        if some_total_s(self._path) is not None:
            self._thread.start()

    def stop(self) -> list[tuple[float, float]]:
        """``(wall clock, seconds of pressure since boot)`` pairs, oldest first."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        return self._samples

    def _run(self) -> None:
        while not self._stop.is_set():
            total = some_total_s(self._path)
            if total is not None:
                self._samples.append((time.time(), total))
            self._stop.wait(self._interval_s)


def by_second(samples: list[tuple[float, float]], start: float, seconds: int) -> list[float]:
    """The pressure (% of wall time) of each whole second since ``start``; NaN for a second without two samples."""
    out: list[float] = []
    for second in range(seconds):
        inside = [(t, total) for t, total in samples if start + second <= t <= start + second + 1]
        if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
            out.append(float("nan"))
            continue
        (t0, p0), (t1, p1) = inside[0], inside[-1]
        out.append(round(100 * (p1 - p0) / (t1 - t0), 1))
    return out
