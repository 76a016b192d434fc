"""The simulator's settings, read from ``SIMULATOR_*`` environment variables in this one place.

Command-line flags override them (see ``log_simulator.cli``); Kafka's address and topics come from
``eventbus.KafkaSettings`` (``KAFKA_BOOTSTRAP_SERVERS``, ``LOGS_TOPIC``, ...).
"""

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SimulatorSettings(BaseSettings):
    """What to send and how fast; each field is the environment variable ``SIMULATOR_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="SIMULATOR_", frozen=True, extra="ignore")

    rate: float = Field(default=10.0, ge=0, description="Events per second; 0 sends as fast as possible.")
    count: int | None = Field(default=None, ge=0, description="Stop after this many events; unset runs until Ctrl-C.")
    duration: float | None = Field(
        default=None, gt=0, description="Stop after this many seconds; unset runs until Ctrl-C."
    )
    services: str = Field(
        default="auth,payment,orders",
        description="Comma-separated services; 'name:350' gives that service a median latency of 350 ms.",
    )
    seed: int | None = Field(default=None, description="Seed for reproducible events and ids; unset draws fresh ones.")
    anomaly_rate: float = Field(
        default=0.01, ge=0, le=1, description="Fraction of events that start an injected anomaly (0 injects none)."
    )
    anomalies: str = Field(
        default="latency_spike,error_burst,level_shift",
        description="Comma-separated anomaly kinds to inject: latency_spike (alias spike), error_burst, level_shift.",
    )
    original_distributions: bool = Field(
        default=False, description="Use the original design's latency N(200, 50) and error rate U[0, 1]."
    )
    replay: Path | None = Field(
        default=None, description="A NAB CSV (timestamp,value) to replay instead of simulating."
    )
    labels: Path | None = Field(
        default=None, description="NAB combined_windows.json; replayed rows in a window: 'nab_window'."
    )
    speed: float = Field(
        default=300.0, ge=0, description="Replay speed factor over real time (300 plays 5-minute rows at 1/s); 0 = max."
    )
    quiet: bool = Field(default=False, description="Print only the final summary (no per-event or progress lines).")
    progress_interval: float = Field(default=2.0, gt=0, description="Seconds between progress lines at high rates.")
    connect_timeout: float = Field(
        default=60.0,
        ge=0,
        description="Seconds to keep retrying an unreachable Kafka at start before giving up; 0 = forever.",
    )
    flush_timeout: float = Field(default=30.0, gt=0, description="Seconds to wait for outstanding sends when stopping.")
