"""The processor's settings, read from the environment in this one place (Kafka's come from ``eventbus``)."""

import os
from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from streaming_detector.gate import SENSITIVITY_STEPS, Sensitivity
from streaming_detector.incidents import RESOLVE_AFTER_S, RESOLVE_EVENTS

PrintMode = Literal["auto", "events", "summary", "quiet"]
SensitivityLevel = Literal["lowest", "low", "medium", "high", "highest"]  # the keys of SENSITIVITY_STEPS


class ProcessorSettings(BaseSettings):
    """How the processor consumes, scores, retries and reports.

    Every field is read from the environment variable of the same name in upper case.
    """

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    processor_group: str = Field(
        default="processor",
        min_length=1,
        description="Kafka consumer group; a group new to the topic starts at the earliest offset.",
    )
    ml_service_url: str = Field(default="http://localhost:8000", description="Base URL of the ML scoring service.")
    ml_scoring_api_key: SecretStr | None = Field(
        default=None, description="Sent as the X-API-Key header when set; never logged."
    )
    ml_timeout_s: float = Field(default=10.0, gt=0, description="Timeout of one scoring request, in seconds.")
    ml_batch_cap: int = Field(
        default=10_000, ge=1, le=10_000, description="Most events in one /predict/batch request (the service's limit)."
    )
    batch_max: int = Field(default=2000, ge=1, description="Most events consumed, scored and committed as one batch.")
    batch_wait_ms: int = Field(
        default=5, ge=0, description="After the first event arrives, how long to wait for more to fill the batch."
    )
    retry_backoff_initial_s: float = Field(
        default=0.5, gt=0, description="First wait before retrying the ML service or Kafka, in seconds."
    )
    retry_backoff_max_s: float = Field(
        default=10.0, gt=0, description="Cap of the exponential backoff between retries, in seconds."
    )
    print_mode: PrintMode = Field(
        default="auto",
        description="auto: a line per event at low rates, a periodic summary at high rates; "
        "events: always a line per event; summary: only the periodic summary; quiet: nothing on stdout.",
    )
    summary_interval_s: float = Field(default=5.0, gt=0, description="Seconds between two summary lines.")
    auto_summary_rate: float = Field(
        default=50.0, gt=0, description="Events per second above which PRINT_MODE=auto prints summaries instead."
    )
    context: bool = Field(
        default=True,
        description="1: score each event in its service's context (per-service state kept here, context model of "
        "the ML service, point model while a service warms up); 0: plain point scoring of each event alone.",
    )
    state_changelog: bool = Field(
        default=True,
        description="1 (with CONTEXT=1): save each service's state to STATE_TOPIC with every commit and restore it "
        "when a partition is assigned, so a restart or a rebalance does not warm services up again; 0: memory only.",
    )
    state_max_services: int = Field(
        default=1000,
        ge=1,
        description="Most services whose state is kept in memory (~350 KiB each); the least recently seen are moved "
        "to a local file and brought back when seen again. Size it to the services a processor sees often.",
    )
    state_commit_interval_ms: int = Field(
        default=1000,
        ge=0,
        description="With the changelog, offsets are committed (and the state of the services seen since saved) at "
        "most this often: a crash redoes up to this much traffic; smaller writes more state.",
    )
    state_dir: str | None = Field(
        default=None,
        description="Directory of the local state file (services moved out of memory); default: the system's "
        "temporary directory. Only a cache: the changelog is the state's home.",
    )
    batch_timings: bool = Field(
        default=False,
        description="1: log a line per batch with where its time went (poll, decode, scoring and the ML hop, "
        "produce and acks, commit, state save, garbage collection, CPU, waiting for a core): what a latency tail "
        "waited for.",
    )
    processor_metrics_host: str = Field(
        default="127.0.0.1", description="Interface of the Prometheus /metrics and /health endpoint."
    )
    processor_metrics_port: int = Field(
        default=9108, ge=0, le=65535, description="Port of the /metrics and /health endpoint; 0 disables it."
    )
    processor_workers: int | Literal["auto"] = Field(
        default="auto",
        description="Processes consuming in the group, started and supervised by this one; auto (the default): one "
        "per partition of LOGS_TOPIC (each partition is read by one process, and an even split keeps them equally "
        "busy), at most two per CPU, so every core is used untuned; 1: a single process.",
    )
    sensitivity: SensitivityLevel = Field(
        default="medium",
        description=f"How readily every service alerts: {', '.join(SENSITIVITY_STEPS)}; each step moves the model's "
        "threshold by one nat (about three times more, or fewer, false alerts a step; README, Sensitivity).",
    )
    sensitivity_by_service: str = Field(
        default="",
        description='Levels of single services, overriding SENSITIVITY for them: e.g. "payment=high,search=low".',
    )
    incident_resolve_s: float = Field(
        default=RESOLVE_AFTER_S,
        ge=0,
        description="An incident is resolved once its service has been normal this long (event time) ...",
    )
    incident_resolve_events: int = Field(
        default=RESOLVE_EVENTS, ge=1, description="... and for at least this many events since its last alert."
    )
    incident_idle_resolve_s: float = Field(
        default=300.0, gt=0, description="An incident whose service sent nothing this long (wall clock) is resolved."
    )
    alertmanager_url: str | None = Field(
        default=None,
        description="Alertmanager base URL (e.g. http://localhost:9193): incidents become alerts; unset: off.",
    )
    incident_webhook_url: str | None = Field(
        default=None, description="URL that gets a JSON POST of each opened and resolved incident; unset: off."
    )
    alert_refresh_s: float = Field(
        default=60.0, gt=0, description="How often an open incident's alert is sent again to Alertmanager."
    )
    dashboard_url: str = Field(
        default="http://localhost:8000/dashboard", description="Linked from alerts: the dashboard people open."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Level of the diagnostics logged to stderr."
    )

    @field_validator("sensitivity_by_service")
    @classmethod
    def _levels_known(cls, value: str, info: ValidationInfo) -> str:
        Sensitivity.parse(info.data.get("sensitivity", "medium"), value)  # raises ValueError naming what is wrong
        return value

    def detector_sensitivity(self) -> Sensitivity:
        return Sensitivity.parse(self.sensitivity, self.sensitivity_by_service)

    @field_validator("processor_workers")
    @classmethod
    def _at_least_one(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("must be at least 1, or auto")
        return value

    def worker_count(self, partitions: int) -> int:
        """PROCESSOR_WORKERS resolved: ``auto`` is one per partition, at most two per CPU (they also wait on I/O)."""
        if self.processor_workers == "auto":
            return max(1, min(2 * (os.cpu_count() or 1), partitions))
        return self.processor_workers

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value
