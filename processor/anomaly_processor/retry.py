"""Capped exponential backoff with jitter, shared by every retry of the processor."""

import random


class Backoff:
    """Delays of ``initial_s * 2**n``, capped at ``max_s``, each shortened by up to ``jitter`` (a fraction).

    The jitter spreads the retries of many processors so a recovering service is not hit all at once;
    it only ever shortens a delay, so the cap holds.
    """

    def __init__(
        self, initial_s: float, max_s: float, *, jitter: float = 0.2, rng: random.Random | None = None
    ) -> None:
        if initial_s <= 0 or max_s < initial_s:
            raise ValueError(f"need 0 < initial_s <= max_s, got initial_s={initial_s}, max_s={max_s}")
        if not 0 <= jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {jitter}")
        self.initial_s = initial_s
        self.max_s = max_s
        self.jitter = jitter
        self.attempts = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        """The wait before the next attempt; every call counts one more failed attempt."""
        base = min(self.max_s, self.initial_s * 2.0 ** min(self.attempts, 60))
        self.attempts += 1
        return base * (1.0 - self.jitter * self._rng.random())

    def reset(self) -> None:
        """Start again from ``initial_s`` (after a success)."""
        self.attempts = 0
