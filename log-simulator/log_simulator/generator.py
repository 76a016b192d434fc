"""Labelled synthetic traffic, with no Kafka: the simulator sends it, the evaluation builds scenarios from it.

``TrafficGenerator`` draws each event's service (weighted, among the services that have appeared), its
latency and error rate from that service's ``NormalProfile``, and now and then starts an injected anomaly
(see ``log_simulator.scenarios``) on it. Per-service options (``ServiceSpec``):

- ``profile``: very different baselines are fine, e.g. ``NormalProfile(latency_median_ms=20)`` next to ``3000``;
- ``weight``: the service's share of the traffic relative to the others;
- ``drift_per_1k``: slow drift; the latency baseline is multiplied by ``1 + drift_per_1k`` every 1000 events
  of that service (compounded, so it never goes negative). Drift is normal behaviour: labelled ``normal``;
- ``starts_after``: the service sends nothing before the generator's ``starts_after``-th event (a new
  service appearing mid-stream; its first events are labelled ``normal``).

With a ``seed`` the whole stream (ids included) is reproducible; with ``start`` the timestamps are synthetic
(``start + i * interval_s``) instead of the wall clock, which makes scenarios reproducible end to end.
With ``keep_episodes=True``, ``stats.episodes`` lists every injected anomaly (kind, service, first event,
length): ground truth for scoring by episode rather than by event.
"""

import itertools
import random
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import numpy as np

from eventbus import LABEL_NORMAL, LogEvent
from log_simulator.errors import ConfigurationError
from log_simulator.scenarios import ALL_KINDS, KINDS, Episode, resolve_kinds
from streaming_detector.profiles import DEFAULT_SERVICES, REALISTIC, NormalProfile

# Version and variant bits of a random UUID (RFC 9562): cleared, then set to version 4, variant 10.
_UUID_FIXED_BITS = (0xF000 << 64) | (0xC000 << 48)
_UUID_V4_BITS = (0x4000 << 64) | (0x8000 << 48)


@dataclass(frozen=True)
class ServiceSpec:
    """One simulated service: how its healthy traffic looks and when and how much it sends."""

    name: str
    profile: NormalProfile = REALISTIC
    weight: float = 1.0
    drift_per_1k: float = 0.0
    starts_after: int = 0

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigurationError("a service needs a name")
        if self.weight <= 0:
            raise ConfigurationError(f"service {self.name}: weight must be > 0, not {self.weight}")
        if self.drift_per_1k <= -1:
            raise ConfigurationError(f"service {self.name}: drift_per_1k must be > -1, not {self.drift_per_1k}")
        if self.starts_after < 0:
            raise ConfigurationError(f"service {self.name}: starts_after must be >= 0, not {self.starts_after}")


def parse_services(text: str, profile: NormalProfile = REALISTIC) -> list[ServiceSpec]:
    """Services from ``auth,payment:350,orders``: a name, optionally ``:median latency in ms``."""
    specs: list[ServiceSpec] = []
    for item in text.split(","):
        name, _, median = item.strip().partition(":")
        name = name.strip()
        if not name:
            continue
        service_profile = profile
        if median.strip():
            if profile.original:
                raise ConfigurationError(f"{item.strip()!r}: per-service medians need the realistic profile")
            try:
                service_profile = replace(profile, latency_median_ms=float(median))
            except ValueError:
                raise ConfigurationError(f"{item.strip()!r}: the median after ':' must be a number of ms") from None
            if not service_profile.latency_median_ms > 0:
                raise ConfigurationError(f"{item.strip()!r}: the median latency must be > 0 ms")
        specs.append(ServiceSpec(name, service_profile))
    if not specs:
        raise ConfigurationError(f"no service names in {text!r}")
    if len({s.name for s in specs}) != len(specs):
        raise ConfigurationError(f"a service is listed twice in {text!r}")
    return specs


@dataclass(frozen=True)
class EpisodeRecord:
    """Ground truth of one injected anomaly: event ``first_event`` (0-based, whole stream) and the next
    ``length - 1`` events of ``service`` carry the label ``kind`` (fewer if the stream stops earlier)."""

    kind: str
    service: str
    first_event: int
    length: int


@dataclass
class GeneratorStats:
    """What the generator produced so far: events, events per label, anomalies started per kind, and
    (with ``keep_episodes=True``) every injected anomaly."""

    events: int = 0
    labels: Counter[str] = field(default_factory=Counter)
    anomalies_started: Counter[str] = field(default_factory=Counter)
    episodes: list[EpisodeRecord] = field(default_factory=list)


class _ServiceState:
    """A service's pre-drawn normal values (drawn in blocks: one numpy call per block, not per event)."""

    def __init__(self, spec: ServiceSpec) -> None:
        self.spec = spec
        self.sent = 0
        self.episode: Episode | None = None
        self._latency: list[float] = []
        self._error: list[float] = []
        self._next = 0

    def draw(self, rng: np.random.Generator, block_size: int) -> tuple[float, float]:
        if self._next == len(self._latency):
            latency, error = self.spec.profile.draw(rng, block_size)
            self._latency, self._error, self._next = latency.tolist(), error.tolist(), 0
        i = self._next
        self._next += 1
        return self._latency[i], self._error[i]


class TrafficGenerator:
    """An endless stream of labelled ``LogEvent``s; see the module docstring for the options."""

    def __init__(
        self,
        services: Sequence[str | ServiceSpec] = DEFAULT_SERVICES,
        *,
        seed: int | None = None,
        anomaly_rate: float = 0.01,
        kinds: Iterable[str] = ALL_KINDS,
        profile: NormalProfile = REALISTIC,
        start: datetime | None = None,
        interval_s: float = 0.01,
        block_size: int = 1024,
        keep_episodes: bool = False,
    ) -> None:
        specs = [s if isinstance(s, ServiceSpec) else ServiceSpec(s, profile) for s in services]
        if not specs:
            raise ConfigurationError("the generator needs at least one service")
        if len({s.name for s in specs}) != len(specs):
            raise ConfigurationError("service names must be unique")
        if not 0.0 <= anomaly_rate <= 1.0:
            raise ConfigurationError(f"anomaly rate must be within [0, 1], not {anomaly_rate}")
        if min(s.starts_after for s in specs) > 0:
            raise ConfigurationError("at least one service must send from the first event (starts_after=0)")
        self.kinds = resolve_kinds(kinds)
        self.anomaly_rate = anomaly_rate
        self.seed = seed
        self.stats = GeneratorStats()
        self._states = [_ServiceState(s) for s in specs]
        self._rng = random.Random(seed)
        self._np_rng = np.random.default_rng(seed)
        self._start = start
        self._interval_s = interval_s
        self._block_size = block_size
        self._keep_episodes = keep_episodes
        self._kind_weights = [KINDS[k].weight for k in self.kinds]
        self._active: list[_ServiceState] = []
        self._active_cum_weights: list[float] = []
        self._next_arrival = 0  # event index at which the set of active services changes next

    @property
    def services(self) -> list[ServiceSpec]:
        return [state.spec for state in self._states]

    def events(self, n: int | None = None) -> Iterator[LogEvent]:
        """The next ``n`` events (forever when ``n`` is None)."""
        produced = 0
        while n is None or produced < n:
            yield self.next_event()
            produced += 1

    def next_event(self) -> LogEvent:
        index = self.stats.events
        if index >= self._next_arrival:
            self._refresh_active(index)
        rng = self._rng
        state = rng.choices(self._active, cum_weights=self._active_cum_weights)[0]
        if self.kinds and rng.random() < self.anomaly_rate:
            state = self._start_episode(state, index)
        latency, error = state.draw(self._np_rng, self._block_size)
        if state.spec.drift_per_1k:
            latency *= (1.0 + state.spec.drift_per_1k) ** (state.sent / 1000.0)
        label = LABEL_NORMAL
        episode = state.episode
        if episode is not None:
            latency, error = episode.apply(latency, error, rng)
            label = episode.label
            if episode.remaining <= 0:
                state.episode = None
        state.sent += 1
        event = LogEvent(
            event_id=self._event_id(),
            timestamp=self._timestamp(index),
            service=state.spec.name,
            latency_ms=round(latency, 3),
            error_rate=round(error, 5),
            label=label,
        )
        self.stats.events += 1
        self.stats.labels[label] += 1
        return event

    def _start_episode(self, state: _ServiceState, index: int) -> _ServiceState:
        """Start an anomaly with this event; on a busy service, move the event to a free one (if any)."""
        if state.episode is not None:
            free = [s for s in self._active if s.episode is None]
            if not free:
                return state
            state = self._rng.choice(free)
        kind = self._rng.choices(self.kinds, weights=self._kind_weights)[0]
        state.episode = KINDS[kind].start(self._rng)
        self.stats.anomalies_started[kind] += 1
        if self._keep_episodes:
            self.stats.episodes.append(EpisodeRecord(kind, state.spec.name, index, state.episode.remaining))
        return state

    def _refresh_active(self, index: int) -> None:
        self._active = [s for s in self._states if s.spec.starts_after <= index]
        self._active_cum_weights = list(itertools.accumulate(s.spec.weight for s in self._active))
        later = [s.spec.starts_after for s in self._states if s.spec.starts_after > index]
        self._next_arrival = min(later) if later else 2**63

    def _event_id(self) -> str:
        """A random (version 4) UUID from the generator's own random stream: seeded, or seeded by the OS."""
        digits = f"{(self._rng.getrandbits(128) & ~_UUID_FIXED_BITS) | _UUID_V4_BITS:032x}"
        return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"

    def _timestamp(self, index: int) -> str:
        if self._start is None:
            return datetime.now(UTC).isoformat()
        return (self._start + timedelta(seconds=index * self._interval_s)).isoformat()
