"""Seeded, labelled event streams: one per kind of trouble the detector must catch (or not raise).

Healthy traffic is drawn from ``streaming_detector.profiles.NormalProfile`` (the simulator's own profile);
incidents are injected here per service, on that service's own sub-stream, and every event of an
incident carries its kind as ``label``. Services interleave at random, as partitions do.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from eventbus import LABEL_NORMAL, LogEvent
from streaming_detector.profiles import (
    BURST_ERROR_RATE,
    DRIFT_LATENCY_FACTOR,
    ERROR_BURST,
    LATENCY_SPIKE,
    LEVEL_SHIFT,
    SHIFT_LATENCY_FACTOR,
    SLOW_DRIFT,
    SPIKE_LATENCY_FACTOR,
    NormalProfile,
)


@dataclass(frozen=True)
class Incident:
    service: str
    kind: str
    start: int  # index in the service's own stream
    length: int


@dataclass
class Scenario:
    name: str
    description: str
    events: list[LogEvent]
    incidents: list[Incident] = field(default_factory=list)


@dataclass
class _Service:
    name: str
    profile: NormalProfile
    count: int
    first_slot: float = 0.0  # fraction of the stream before the service appears


def _build(
    name: str,
    description: str,
    services: list[_Service],
    rng: np.random.Generator,
    inject: Callable[[str, np.ndarray, np.ndarray, np.random.Generator], list[tuple[str, int, int]]],
) -> Scenario:
    """Draw each service's stream, let ``inject`` alter it, then interleave the services at random."""
    streams = []
    incidents = []
    for service in services:
        latency, error = service.profile.draw(rng, service.count)
        labels = np.full(service.count, LABEL_NORMAL, dtype=object)
        for kind, start, length in inject(service.name, latency, error, rng):
            labels[start : start + length] = kind
            incidents.append(Incident(service.name, kind, start, length))
        # Random positions in the stream, sorted to keep each service's order.
        positions = np.sort(rng.uniform(service.first_slot, 1.0, service.count))
        streams.append((positions, service.name, latency, np.clip(error, 0.0, 1.0), labels))
    order_keys = np.concatenate([s[0] for s in streams])
    names = np.concatenate([[s[1]] * len(s[0]) for s in streams])
    latency = np.concatenate([s[2] for s in streams])
    error = np.concatenate([s[3] for s in streams])
    labels = np.concatenate([s[4] for s in streams])
    order = np.argsort(order_keys, kind="stable")
    origin = datetime(2026, 1, 1, tzinfo=UTC)
    events = [
        LogEvent(
            event_id=f"{name}-{i}",
            timestamp=(origin + timedelta(milliseconds=100 * i)).isoformat(),
            service=str(names[j]),
            latency_ms=round(float(latency[j]), 3),
            error_rate=round(float(error[j]), 5),
            label=str(labels[j]),
        )
        for i, j in enumerate(order.tolist())
    ]
    return Scenario(name, description, events, incidents)


def _spaced_starts(rng: np.random.Generator, count: int, length: int, incidents: int, gap: int) -> list[int]:
    """Incident starts at least ``gap`` events apart, after a quiet first ``gap`` events."""
    slots = (count - gap - length) // (gap + length)
    chosen = np.sort(rng.choice(slots, size=min(incidents, slots), replace=False))
    return [gap + int(k) * (gap + length) + int(rng.integers(0, gap // 2)) for k in chosen]


def _spikes(name: str, latency: np.ndarray, error: np.ndarray, rng: np.random.Generator) -> list[tuple[str, int, int]]:
    out = []
    for start in _spaced_starts(rng, len(latency), 3, 4, 200):
        length = int(rng.integers(1, 4))
        latency[start : start + length] *= rng.uniform(*SPIKE_LATENCY_FACTOR)
        out.append((LATENCY_SPIKE, start, length))
    return out


def _bursts(name: str, latency: np.ndarray, error: np.ndarray, rng: np.random.Generator) -> list[tuple[str, int, int]]:
    out = []
    for start in _spaced_starts(rng, len(latency), 5, 4, 200):
        length = int(rng.integers(2, 6))
        error[start : start + length] = rng.uniform(*BURST_ERROR_RATE, length)
        out.append((ERROR_BURST, start, length))
    return out


def _shifts(name: str, latency: np.ndarray, error: np.ndarray, rng: np.random.Generator) -> list[tuple[str, int, int]]:
    out = []
    for start in _spaced_starts(rng, len(latency), 150, 2, 200):
        length = int(rng.integers(60, 150))
        latency[start : start + length] *= rng.uniform(*SHIFT_LATENCY_FACTOR)
        out.append((LEVEL_SHIFT, start, length))
    return out


def _drift(name: str, latency: np.ndarray, error: np.ndarray, rng: np.random.Generator) -> list[tuple[str, int, int]]:
    """Latency creeps up to x2–3 over a few hundred events, then stays there: the service is degrading."""
    start = int(rng.integers(len(latency) // 3, len(latency) // 2))
    ramp = min(int(rng.integers(200, 400)), len(latency) - start - 50)
    factor = rng.uniform(*DRIFT_LATENCY_FACTOR)
    multiplier = np.ones(len(latency))
    multiplier[start : start + ramp] = np.linspace(1.0, factor, ramp)
    multiplier[start + ramp :] = factor
    latency *= multiplier
    return [(SLOW_DRIFT, start, len(latency) - start)]


def _mixed(name: str, latency: np.ndarray, error: np.ndarray, rng: np.random.Generator) -> list[tuple[str, int, int]]:
    return _spikes(name, latency, error, rng) if name.endswith("a") else _bursts(name, latency, error, rng)


def _none(name: str, latency: np.ndarray, error: np.ndarray, rng: np.random.Generator) -> list[tuple[str, int, int]]:
    return []


def _new_service(
    name: str, latency: np.ndarray, error: np.ndarray, rng: np.random.Generator
) -> list[tuple[str, int, int]]:
    return _spikes(name, latency, error, rng) if name == "newcomer" else []


def _profile(median_ms: float, sigma: float = 0.25) -> NormalProfile:
    return NormalProfile(latency_median_ms=median_ms, latency_sigma=sigma)


def _services(rng: np.random.Generator, count: int, per_service: int) -> list[_Service]:
    medians = np.exp(rng.uniform(np.log(30.0), np.log(1500.0), count))
    sigmas = rng.uniform(0.15, 0.4, count)
    return [
        _Service(f"svc-{k}", _profile(float(m), float(s)), per_service)
        for k, (m, s) in enumerate(zip(medians, sigmas, strict=True))
    ]


SCENARIO_NAMES = (
    "latency_spikes",
    "error_bursts",
    "level_shifts",
    "slow_drift",
    "mixed_baselines",
    "new_service",
    "normal",
)


def build_scenario(name: str, seed: int = 0, scale: float = 1.0) -> Scenario:
    """The scenario called ``name``, reproducible from ``seed``; ``scale`` shrinks it for quick tests."""
    rng = np.random.default_rng([seed, SCENARIO_NAMES.index(name)])
    per = max(400, int(1500 * scale))
    if name == "latency_spikes":
        return _build(name, "a few events at x4-10 latency", _services(rng, 3, per), rng, _spikes)
    if name == "error_bursts":
        return _build(name, "a few events at 20-80% errors", _services(rng, 3, per), rng, _bursts)
    if name == "level_shifts":
        return _build(name, "latency x1.6-2.5 for 60-150 events", _services(rng, 3, per), rng, _shifts)
    if name == "slow_drift":
        return _build(name, "latency creeps to x2-3 over 200-400 events", _services(rng, 3, per), rng, _drift)
    if name == "mixed_baselines":
        services = [
            _Service("fast-a", _profile(12.0, 0.3), per),
            _Service("mid-b", _profile(250.0, 0.2), per),
            _Service("slow-a", _profile(3000.0, 0.35), per),
            _Service("slow-b", _profile(1800.0, 0.15), per),
        ]
        return _build(name, "services from 12 ms to 3 s, spikes and bursts", services, rng, _mixed)
    if name == "new_service":
        services = _services(rng, 2, per) + [_Service("newcomer", _profile(900.0, 0.3), per, first_slot=0.5)]
        return _build(name, "a 900 ms service appears mid-stream, then spikes", services, rng, _new_service)
    if name == "normal":
        return _build(name, "healthy traffic only: every alert is false", _services(rng, 4, per), rng, _none)
    raise ValueError(f"unknown scenario {name!r}; known: {', '.join(SCENARIO_NAMES)}")
