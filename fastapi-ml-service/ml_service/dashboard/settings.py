"""The dashboard's own knobs, read from the environment in this one place (Kafka ones come from eventbus)."""

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class DashboardSettings(BaseSettings):
    """Every field is read from the environment variable of the same name in upper case."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    processor_group: str = Field(
        default="processor", description="Consumer group of the processor, whose lag on the logs topic is shown."
    )
    dashboard_window_s: int = Field(
        default=300,
        ge=10,
        le=3600,
        description="Seconds of history kept and drawn; also how far back a new feed reads.",
    )
    dashboard_backfill_max_per_partition: int = Field(
        default=20_000,
        ge=0,
        description="At most this many past records per partition are re-read when the feed starts.",
    )
    dashboard_idle_grace_s: float = Field(
        default=30.0, ge=0, description="The Kafka feed stops this long after the last dashboard client left."
    )
    dashboard_push_interval_s: float = Field(
        default=1.0, gt=0, description="Seconds between two updates pushed to each live client."
    )
    dashboard_lag_interval_s: float = Field(
        default=5.0, gt=0, description="Seconds between two reads of the processor's lag and the dead-letter total."
    )
    dashboard_stream_max_s: float = Field(
        default=300.0,
        gt=0,
        description="A live stream ends after this long and the browser reconnects; bounds how long it holds a worker.",
    )
    dashboard_max_anomalies: int = Field(default=50, ge=1, description="Latest anomalies kept for the table.")
    dashboard_max_services: int = Field(
        default=50, ge=1, description="Services drawn at most; verdicts of further services are counted as dropped."
    )
