"""The log simulator: labelled synthetic service traffic (or a replayed NAB series) sent to Kafka.

Reusable without Kafka::

    TrafficGenerator, ServiceSpec, parse_services   labelled events (log_simulator.generator)
    KINDS, ALL_KINDS, resolve_kinds                  the injected anomaly kinds (log_simulator.scenarios)
    NormalProfile, REALISTIC, ORIGINAL               healthy traffic per service (streaming_detector.profiles)
    load_replay, ReplaySeries                        a NAB CSV as events (log_simulator.replay)
"""

from log_simulator.generator import GeneratorStats, ServiceSpec, TrafficGenerator, parse_services
from log_simulator.replay import NAB_WINDOW, ReplaySeries, load_replay
from log_simulator.scenarios import ALL_KINDS, ERROR_BURST, KINDS, LATENCY_SPIKE, LEVEL_SHIFT, resolve_kinds
from streaming_detector.profiles import DEFAULT_SERVICES, ORIGINAL, REALISTIC, NormalProfile, generate_normal_events

__all__ = [
    "ALL_KINDS",
    "DEFAULT_SERVICES",
    "ERROR_BURST",
    "KINDS",
    "LATENCY_SPIKE",
    "LEVEL_SHIFT",
    "NAB_WINDOW",
    "ORIGINAL",
    "REALISTIC",
    "GeneratorStats",
    "NormalProfile",
    "ReplaySeries",
    "ServiceSpec",
    "TrafficGenerator",
    "generate_normal_events",
    "load_replay",
    "parse_services",
    "resolve_kinds",
]
