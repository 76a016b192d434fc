"""Which services' state is in memory: at most ``max_services``, the least recently seen moved to a ``StateStore``.

``ContextualScorer`` keeps one ``ServiceMemory``; the processor's store is a local file filled from its
changelog topic, so a service moved out (or owned by another processor before) comes back as it left. Only
the tracker's state moves: an alert gate's cool-down (evaluation's; the processor runs without) stays with
the gate.
"""

import itertools
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable

from streaming_detector.state import StateMismatchError, StateStore, decode_state, encode_state
from streaming_detector.tracker import ContextTracker

log = logging.getLogger(__name__)


class ServiceMemory:
    """The services in a tracker, least recently seen first; those whose state changed since ``take_dirty``."""

    def __init__(self, store: StateStore | None = None, max_services: int | None = None) -> None:
        self.keep_in(store, max_services)
        self.in_memory: OrderedDict[str, None] = OrderedDict()
        self.dirty: set[str] = set()  # services whose state changed since ``take_dirty``
        self.evicted = 0  # services moved out of memory to make room

    def keep_in(self, store: StateStore | None, max_services: int | None) -> None:
        if max_services is not None and (max_services < 1 or store is None):
            raise ValueError("max_services needs a store to move state to, and must be positive")
        self.store, self.max_services = store, max_services

    def reset(self, names: Iterable[str] = ()) -> None:
        """Nothing changed, and ``names`` in memory (a new tracker, or one loaded whole)."""
        self.in_memory = OrderedDict.fromkeys(names)
        self.dirty.clear()

    def take_dirty(self) -> set[str]:
        dirty, self.dirty = self.dirty, set()
        return dirty

    def export(self, service: str, tracker: ContextTracker | None) -> bytes | None:
        """``service``'s state as bytes (from memory, else from the store); None if it has none."""
        if tracker is not None and service in tracker:
            return encode_state(tracker.config, tracker.export(service))
        return self.store.get(service) if self.store is not None else None

    def forget(self, which: Callable[[str], bool], tracker: ContextTracker | None) -> int:
        """Drop from memory, without saving, every service ``which`` selects; returns how many were in memory."""
        dropped = [name for name in self.in_memory if which(name)]
        for name in dropped:
            self.drop(name, tracker)
        self.dirty = {name for name in self.dirty if not which(name)}
        return len(dropped)

    def drop(self, name: str, tracker: ContextTracker | None) -> None:
        del self.in_memory[name]
        if tracker is not None and name in tracker:
            tracker.remove(name)

    def bring_in(self, names: set[str], tracker: ContextTracker) -> None:
        """Make ``names`` the most recently seen services in memory: load those that are not from the store,
        first moving the least recently seen others out if there is no room for them."""
        missing = [name for name in names if name not in self.in_memory]
        if self.max_services is not None:
            overflow = len(self.in_memory) + len(missing) - self.max_services
            for name in list(itertools.islice((n for n in self.in_memory if n not in names), max(overflow, 0))):
                data = self.export(name, tracker)
                assert self.store is not None and data is not None
                self.store.put(name, data)
                self.drop(name, tracker)
                self.evicted += 1
        for name in missing:
            self.in_memory[name] = None
            data = self.store.get(name) if self.store is not None else None
            if data is None:
                continue
            try:
                tracker.restore(name, decode_state(tracker.config, data))
            except StateMismatchError as exc:
                log.warning("state of service %r discarded, it warms up again: %s", name, exc)
        for name in names:
            self.in_memory.move_to_end(name)
