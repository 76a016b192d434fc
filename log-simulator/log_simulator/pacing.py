"""When to send: a steady rate (token bucket) or a timetable (replay), both batching at high rates.

Both pacers answer ``wait(limit)``: block until at least one event is due, then return how many are due
now (at most ``limit``). The caller sends that many. At high rates a pacer wakes up once per ``tick_s``
and releases a batch, instead of sleeping once per event; at low rates it sleeps until the next event.
``clock`` and ``sleep`` are injectable so the logic is tested with a fake clock.
"""

import math
import time
from collections.abc import Callable, Sequence

Clock = Callable[[], float]
Sleep = Callable[[float], object]

_EPSILON = 1e-9  # float rounding: an event due "now" must not look due a hair later


class RatePacer:
    """``rate`` events per second on average (0 = as fast as possible).

    The first event is due at once, then tokens accrue with the clock; a stall (GC, a blocked send) is
    caught up, but only for ``max_lag_s`` worth of events, so a long pause does not end in a flood.
    """

    def __init__(
        self,
        rate: float,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
        tick_s: float = 0.005,
        max_lag_s: float = 1.0,
    ) -> None:
        if rate < 0 or not math.isfinite(rate):
            raise ValueError(f"rate must be >= 0 events/s, not {rate}")
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self._min_batch = max(1, int(rate * tick_s))
        self._max_lag = max(1.0, rate * max_lag_s)
        self._started = clock()
        self._released = 0  # events released since ``_started``

    def wait(self, limit: int) -> int:
        if limit <= 0:
            return 0
        if self.rate == 0:
            return limit
        due = self._due()
        if due < 1:
            want = min(self._min_batch, limit)
            self._sleep((self._released + want - 1) / self.rate - (self._clock() - self._started))
            due = self._due()
            if due < 1:  # woken early (e.g. by a stop request): nothing is due yet
                return 0
        n = min(due, limit)
        self._released += n
        return n

    def _due(self) -> int:
        owed = self.rate * (self._clock() - self._started) + 1 - self._released
        if owed > self._max_lag:
            # Forget what was missed beyond the allowed lag: move the start forward.
            self._started += (owed - self._max_lag) / self.rate
            owed = self._max_lag
        return int(owed + _EPSILON)


class SchedulePacer:
    """Events due at given offsets (seconds from the first event, non-decreasing) played at ``speed`` x.

    ``speed`` 0 plays as fast as possible. Offsets come from the data (replay), so no catch-up limit:
    after a stall every overdue event is released, in order. Past the last offset nothing is held back
    (``wait`` returns ``limit``): the event source, not the pacer, says when the replay is over.
    """

    def __init__(
        self,
        offsets_s: Sequence[float],
        speed: float,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
        tick_s: float = 0.005,
    ) -> None:
        if speed < 0 or not math.isfinite(speed):
            raise ValueError(f"speed must be >= 0, not {speed}")
        self.speed = speed
        self._offsets = offsets_s
        self._clock = clock
        self._sleep = sleep
        self._tick_s = tick_s
        self._started = clock()
        self._released = 0

    def wait(self, limit: int) -> int:
        remaining = len(self._offsets) - self._released
        if limit <= 0 or remaining <= 0:
            return max(limit, 0)
        limit = min(limit, remaining)
        if self.speed == 0:
            self._released += limit
            return limit
        elapsed = self._clock() - self._started + _EPSILON
        next_due = self._offsets[self._released] / self.speed
        if next_due > elapsed:
            self._sleep(max(next_due - elapsed, self._tick_s))  # never wake for less than a tick: batch
            elapsed = self._clock() - self._started + _EPSILON
            if next_due > elapsed:
                return 0
        n = 0
        while n < limit and self._offsets[self._released + n] / self.speed <= elapsed:
            n += 1
        self._released += n
        return n
