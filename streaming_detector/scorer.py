"""The streaming detector composed: ``ContextualScorer`` keeps each service's state and scores events in it.

Tracker (per-service context features) -> a model client (the context model's raw scores, raised where the
hour-baseline signal alone says more: ``gate.hour_scores``) -> gate (the threshold, and per-service cool-downs
unless ``cooldown=False``) -> an explanation per verdict (``streaming_detector.explain``). The model client is
a small protocol (``ModelClient``) with two implementations: over HTTP to the ML service
(``anomaly_processor.ml_client.HttpScorer``, the processor) and in this process
(``streaming_detector.in_process.InProcessModel``, evaluation and tests).

Where the state lives: in the scoring process, one ``ContextTracker`` (per-service baselines) and one
``AlertGate`` for the services whose partition it consumes (events are keyed by service, so a service's events
all reach one consumer). With ``max_services``, at most that many services are in the tracker: the least
recently seen is moved to the ``StateStore`` (bytes, ``streaming_detector.state``) and brought back when it is
seen again (``streaming_detector.memory``). ``export``/``take_dirty``/``forget`` let the processor save each
service's state to its changelog topic and drop the state of partitions it no longer owns.

Each event advances the state exactly once, however often the pipeline asks for it: its features and,
once scored, its final verdict are cached by ``event_id`` (the processor derives one for an event sent
without), so a batch retried while the ML service is down, bisected after a 4xx, or redelivered after a
failed commit gets the same features and the same verdict.
"""

import itertools
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple, Protocol

import numpy as np

from streaming_detector.errors import ScoringConfigError, ScoringRejectedError, ScoringUnavailableError
from streaming_detector.explain import Measured, PointReference, explain_context, explain_point
from streaming_detector.gate import CALM, QUIET, AlertGate, GateConfig, Sensitivity, calm_scores, hour_scores
from streaming_detector.memory import ServiceMemory
from streaming_detector.state import StateStore
from streaming_detector.tracker import CONTEXT_FEATURES, ContextConfig, ContextTracker, Spread

log = logging.getLogger(__name__)
HISTORY_WEIGHT = CONTEXT_FEATURES.index("history_weight")  # its column in the context sent

DEFAULT_CACHE_EVENTS = 10_000

Context = tuple[float, ...]
# Per event, its context features to send as ``context``, or None to send none.
Contexts = Sequence[Sequence[float] | None]


class Score(NamedTuple):
    """The detector's answer for one event: ``score`` is higher when more anomalous.

    ``in_context``: scored by the context model (its service was warm); ``muted``: in the cool-down after an
    alert of the same service, so ``anomaly`` is False whatever the score (never with ``cooldown=False``);
    ``quiet``: its service was quiet, so its threshold was ``gate.QUIET_RELIEF`` lower.
    ``explanation`` (an ``eventbus.Explanation`` as a dict) says why; ``incident_id`` names the incident an
    alert belongs to (set by the processor's incidents, never by the ML service).
    """

    anomaly: bool
    score: float
    model_version: str
    in_context: bool = False
    muted: bool = False
    explanation: dict[str, Any] | None = None
    incident_id: str | None = None
    quiet: bool = False

    @property
    def alert_score(self) -> float:
        """The score with the cool-down applied (0 when muted): what NAB's threshold sweep ranks."""
        return 0.0 if self.muted else self.score


class Event(Measured, Protocol):
    """What the scorer reads of an event (``eventbus.LogEvent`` has it, so does any record with these fields)."""

    @property
    def event_id(self) -> str | None: ...  # the cache key; the processor derives one for an event sent without

    @property
    def event_time(self) -> float | None: ...  # when it happened, epoch seconds (None: unknown)


class ModelClient(Protocol):
    """Where the context model runs: ``model_info`` describes it as ``GET /model`` does, ``score`` scores events.

    ``score`` gets each event's context features (None for an event of a service still warming up, which the
    point model answers) and raises ``ScoringUnavailableError`` (retry), ``ScoringRejectedError`` (bad data)
    or ``ScoringConfigError`` (never answers this caller). ``context_decimals``: features are rounded to this
    many decimals before they are sent (None: sent as computed).
    """

    base_url: str
    context_decimals: int | None

    def model_info(self) -> dict[str, Any]: ...

    def score(self, events: Sequence[Any], contexts: Contexts | None = None) -> list[Score]: ...

    def ready(self) -> bool: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ContextSpec:
    """The context model as ``GET /model`` describes it: what the tracker and the gate are built from."""

    version: str
    features: tuple[str, ...]
    tracker: ContextConfig
    gate: GateConfig
    point: PointReference | None = None  # what explains the point model's verdicts during warm-up

    @classmethod
    def from_model_info(cls, info: Mapping[str, Any], source: str) -> "ContextSpec":
        context = info.get("context")
        if not isinstance(context, dict):
            raise ScoringConfigError(
                f"{source}/model describes no context model: retrain it with `python save_model.py`, "
                "or run the processor with CONTEXT=0"
            )
        try:
            return cls(
                version=str(info["version"]),
                features=tuple(str(name) for name in context["features"]),
                tracker=ContextConfig(**context["context"]),
                gate=GateConfig.from_dict(context["gate"]),
                point=PointReference.from_model_info(info),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ScoringConfigError(
                f"{source}/model has a context model this processor cannot read: {exc!r}"
            ) from None


class ContextualScorer:
    """A ``Scorer``: per-service context features computed here, scored by the model client, explained here.

    Warm events go to the client with their ``context`` (the context model scores them); events of services
    still warming up go without (the point model answers). The gate then decides the warm events' alerts from
    their raw scores: with ``cooldown=True`` (evaluation's default) it mutes what follows an alert of the
    same service; the processor passes ``cooldown=False``, marks every event above the threshold and groups a
    service's consecutive alerts into one incident. Every verdict carries an explanation. The model
    description is fetched from the client on first use and again whenever it answers with another
    ``model_version``.
    """

    def __init__(
        self,
        client: ModelClient,
        *,
        cache_events: int = DEFAULT_CACHE_EVENTS,
        store: StateStore | None = None,
        max_services: int | None = None,
        cooldown: bool = True,
        sensitivity: Sensitivity | None = None,
    ) -> None:
        if cache_events < 1:
            raise ValueError(f"cache_events must be positive, got {cache_events}")
        self.memory = ServiceMemory(store, max_services)  # which services' state is in memory, the others in store
        self.client = client
        self.base_url = client.base_url
        self.cache_events = cache_events
        self.cooldown = cooldown
        self.sensitivity = sensitivity or Sensitivity()  # moves each service's threshold (see ``gate``)
        self.spec: ContextSpec | None = None
        self.tracker: ContextTracker | None = None
        self.gate: AlertGate | None = None
        # event id -> (its service, the features sent: None while warming up, its hour-baseline surprisal, its
        # surprise's excess were the service calm)
        self._contexts: dict[str, tuple[str, Context | None, float, float]] = {}
        self._verdicts: dict[str, Score] = {}  # event id -> final verdict, once scored
        self._spreads: dict[str, Spread] = {}  # service -> its spreads before its latest batch

    def ready(self) -> bool:
        return self.client.ready()

    def close(self) -> None:
        self.client.close()

    def score(self, events: Sequence[Event]) -> list[Score]:
        spec, tracker, gate = self._model()
        contexts, hours, excesses = self._learn(events, tracker)
        verdicts: list[Score | None] = [self._verdicts.get(_event_id(event)) for event in events]
        todo = [i for i, verdict in enumerate(verdicts) if verdict is None]
        if todo:
            pending = [events[i] for i in todo]
            pending_contexts = [contexts[i] for i in todo]
            try:
                scores = self.client.score(pending, pending_contexts)
            except ScoringRejectedError:
                if any(context is not None for context in pending_contexts) and self._model_changed():
                    raise ScoringUnavailableError("the ML service changed its model: scoring again") from None
                raise
            warm = [j for j, context in enumerate(pending_contexts) if context is not None]
            if warm:
                at = np.array(todo)[warm] if len(warm) < len(events) else slice(None)  # the warm ones of ``events``
                model = np.array([scores[j].score for j in warm])
                raw = hour_scores(model, hours[at])
                names = [pending[j].service for j in warm]
                quiet, calm = self._judge(names, raw, tracker)
                sent = [pending_contexts[j] or () for j in warm]
                excess = excesses[at]
                raised = np.flatnonzero(calm & (excess > 0.0))
                if len(raised):  # rare: only a calm service's spikes its history rates by their rank
                    weight = np.zeros(len(warm))
                    weight[raised] = [sent[k][HISTORY_WEIGHT] for k in raised.tolist()]
                    raw = calm_scores(raw, model, weight, excess, calm)
                gated = gate.decide_detailed(names, raw, quiet=quiet)
                explained = explain_context(
                    [pending[j] for j in warm],
                    sent,
                    raw.tolist(),
                    self._spreads,
                    gated.thresholds,
                    tracker.config.log_values,
                )
                decided = zip(
                    warm,
                    raw.tolist(),
                    gated.anomaly.tolist(),
                    gated.suppressed.tolist(),
                    explained,
                    quiet.tolist(),
                    strict=True,
                )
                for j, value, alert, muted, why, calm in decided:
                    scores[j] = scores[j]._replace(
                        anomaly=alert, score=value, in_context=True, muted=muted, explanation=why, quiet=calm
                    )
            if spec.point is not None and len(warm) < len(pending):
                cold = [j for j, context in enumerate(pending_contexts) if context is None]
                reasons = explain_point([pending[j] for j in cold], [scores[j].score for j in cold], spec.point)
                for j, why in zip(cold, reasons, strict=True):
                    scores[j] = scores[j]._replace(explanation=why)
            for i, event, score in zip(todo, pending, scores, strict=True):
                verdicts[i] = self._verdicts[_event_id(event)] = score
            if any(score.model_version != spec.version for score in scores):
                self._model_changed()
        return [verdict for verdict in verdicts if verdict is not None]

    def state_dict(self) -> dict[str, Any]:
        """JSON-able snapshot of the per-service state (for diagnostics and tests)."""
        return {
            "tracker": self.tracker.state_dict() if self.tracker else None,
            "gate": self.gate.state_dict() if self.gate else None,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a ``state_dict`` (the model description is fetched first, as on first use)."""
        _, tracker, gate = self._model()
        tracker.load_state_dict(state["tracker"])
        gate.load_state_dict(state["gate"])
        self.memory.reset(tracker.names)

    # -- the state of single services (the processor's changelog) -----------------------------------------

    def keep_state_in(self, store: StateStore, max_services: int) -> None:
        """From now on, at most ``max_services`` services in memory; the others in ``store``."""
        self.memory.keep_in(store, max_services)

    def take_dirty(self) -> set[str]:
        """The services whose state changed since the last call."""
        return self.memory.take_dirty()

    def export(self, service: str) -> bytes | None:
        """``service``'s state as bytes (from memory, else from the store); None if it has none."""
        return self.memory.export(service, self.tracker)

    def forget(self, which: Callable[[str], bool]) -> int:
        """Drop from memory, without saving, every service ``which`` selects, and the cached features and
        verdicts of its events (whoever owns it now restores it); returns how many were in memory."""
        dropped = self.memory.forget(which, self.tracker)
        if self.gate is not None:  # evaluation's cool-downs (the processor runs without)
            self.gate.cooldown = {name: left for name, left in self.gate.cooldown.items() if not which(name)}
        self._spreads = {name: spread for name, spread in self._spreads.items() if not which(name)}
        stale = [event_id for event_id, (service, *_) in self._contexts.items() if which(service)]
        for event_id in stale:
            del self._contexts[event_id]
            self._verdicts.pop(event_id, None)
        return dropped

    def services_in_memory(self) -> int:
        return len(self.memory.in_memory)

    def _runs(self, names: Sequence[str], tracker: ContextTracker) -> Iterator[tuple[int, int, set[str]]]:
        """``(start, stop, services)``: ``names`` in runs of at most ``max_services`` distinct services, each run's
        services brought into memory (and marked changed) before it is yielded, so memory stays bounded however
        many services a batch holds."""
        limit = self.memory.max_services or len(names) or 1
        start = 0
        while start < len(names):
            run: set[str] = set()
            stop = start
            while stop < len(names) and (names[stop] in run or len(run) < limit):
                run.add(names[stop])
                stop += 1
            self.memory.bring_in(run, tracker)
            yield start, stop, run
            self.memory.dirty.update(run)
            start = stop

    def _judge(
        self, names: Sequence[str], scores: np.ndarray, tracker: ContextTracker
    ) -> tuple[np.ndarray, np.ndarray]:
        """``tracker.judge_scores`` of context scores in stream order, run by run: quiet (``gate.QUIET``) and calm
        (``gate.CALM``)."""
        calm = np.zeros(len(names), dtype=np.bool_)
        parts = [
            tracker.judge_scores(names[start:stop], scores[start:stop], QUIET, CALM, calm[start:stop])
            for start, stop, _ in self._runs(names, tracker)
        ]
        return (parts[0] if len(parts) == 1 else np.concatenate(parts)), calm

    def _advance(self, events: Sequence[Event], tracker: ContextTracker) -> tuple[Any, Any, np.ndarray, np.ndarray]:
        """``tracker.features`` of ``events``, run by run (``_runs``), their hour-baseline and calm surprisals. Each
        run's services' spreads are kept to explain their verdicts: from before the run, or after it for a
        service warm only since."""
        names = [e.service for e in events]
        hours = np.zeros(len(events), dtype=np.float64)
        excesses = np.zeros(len(events), dtype=np.float64)
        rows, warm = [], []
        for start, stop, run in self._runs(names, tracker):
            before = tracker.spreads(run)
            part = events[start:stop]
            r, w = tracker.features(
                names[start:stop],
                [e.latency_ms for e in part],
                [e.error_rate for e in part],
                [e.event_time for e in part],
                hours[start:stop],
                excesses[start:stop],
            )
            self._spreads.update(tracker.spreads(run - before.keys()))
            self._spreads.update(before)
            rows.append(r)
            warm.append(w)
        if len(rows) == 1:
            return rows[0], warm[0], hours, excesses
        return np.concatenate(rows), np.concatenate(warm), hours, excesses

    # -- internals -----------------------------------------------------------------------------------------

    def _model(self) -> tuple[ContextSpec, ContextTracker, AlertGate]:
        if self.spec is None or self.tracker is None or self.gate is None:
            self._install(ContextSpec.from_model_info(self.client.model_info(), self.base_url))
        assert self.spec is not None and self.tracker is not None and self.gate is not None
        return self.spec, self.tracker, self.gate

    def _install(self, spec: ContextSpec) -> None:
        """Build (or rebuild) the tracker and gate for ``spec``, keeping whatever state still applies."""
        previous = self.spec
        if self.tracker is None or previous is None or previous.tracker != spec.tracker:
            if self.tracker is not None:
                log.warning("context configuration changed with model %s: every service warms up again", spec.version)
            self.tracker = ContextTracker(spec.tracker)
            self.memory.reset()
            self._contexts.clear()  # cached features were computed with the old configuration
            self._verdicts.clear()
        # The processor's incidents group alerts: a cool-down there would mute what follows one (and hide incidents).
        gate = AlertGate(spec.gate if self.cooldown else replace(spec.gate, cooldown_events=0), self.sensitivity)
        if self.gate is not None:
            gate.cooldown = dict(self.gate.cooldown)
        self.gate = gate
        self.spec = spec
        log.info(
            "context model %s: %d features, threshold %g, cool-down %d events, warm-up %d events",
            spec.version,
            len(spec.features),
            spec.gate.threshold,
            gate.config.cooldown_events,
            spec.tracker.warmup_events,
        )

    def _model_changed(self) -> bool:
        """Fetch the model description again; True (and the tracker and gate rebuilt) when its version changed."""
        spec = ContextSpec.from_model_info(self.client.model_info(), self.base_url)
        if self.spec is not None and spec.version == self.spec.version:
            return False
        log.info("ML service now serves %s (was %s)", spec.version, self.spec.version if self.spec else None)
        self._install(spec)
        return True

    def _learn(
        self, events: Sequence[Event], tracker: ContextTracker
    ) -> tuple[list[Context | None], np.ndarray, np.ndarray]:
        """Each event's context features (None while its service warms up), hour-baseline and calm surprisals. Those of
        events not seen yet are computed in stream order, which advances their services' state; the others come
        from the cache."""
        cache = self._contexts
        contexts: list[Context | None] = []
        hours = np.zeros(len(events), dtype=np.float64)
        excesses = np.zeros(len(events), dtype=np.float64)
        new: list[int] = []
        for i, event in enumerate(events):
            hit = cache.get(_event_id(event))
            if hit is None:
                new.append(i)
                contexts.append(None)
            else:
                contexts.append(hit[1])
                hours[i] = hit[2]
                excesses[i] = hit[3]
        if new:
            fresh = [events[i] for i in new] if len(new) < len(events) else events
            features, warm, surprise, excess = self._advance(fresh, tracker)
            hours[new] = surprise
            excesses[new] = excess
            decimals = self.client.context_decimals
            # Tuples of floats: the garbage collector stops tracking them, a cache of lists it would scan.
            rows = map(tuple, (features if decimals is None else features.round(decimals)).tolist())
            learned = zip(new, fresh, rows, warm.tolist(), surprise.tolist(), excess.tolist(), strict=True)
            for i, event, row, is_warm, hour, calm_excess in learned:
                context = row if is_warm else None
                contexts[i] = context
                cache[_event_id(event)] = (event.service, context, hour, calm_excess)
            self._evict()
        return contexts, hours, excesses

    def _evict(self) -> None:
        """Forget the oldest events beyond ``cache_events`` (dicts keep insertion order)."""
        overflow = len(self._contexts) - self.cache_events
        if overflow <= 0:
            return
        oldest = list(itertools.islice(self._contexts, overflow))
        for event_id in oldest:
            del self._contexts[event_id]
            self._verdicts.pop(event_id, None)


def _event_id(event: Event) -> str:
    """The key of an event's cached features and verdict (the pipeline gives every event one)."""
    if event.event_id is None:
        raise ValueError(f"ContextualScorer needs events with an event_id: {event!r:.200}")
    return event.event_id
