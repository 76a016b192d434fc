"""Why a verdict is what it is (``Explanation``) and what an incident is (``Incident``, topic ``incidents``).

An incident is a service's run of consecutive alerts: opened by its first alert, updated while alerts
follow, resolved once the service has been normal for a while (or has sent nothing for longer). Records on
``INCIDENTS_TOPIC`` are keyed by service; each carries the incident's whole state, so the last record of an
``incident_id`` is its current state.
"""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Signal = Literal["latency level", "sustained shift", "latency drift", "latency step", "error rate"]


class Explanation(BaseModel):
    """The signal that drove a verdict's score, its observed value, and the service's normal at that moment.

    ``severity`` is the one scale users see: the score divided by the alert threshold of the model that
    scored the event (1.0 = the threshold; the context model scores in nats, the point model in (0, 1]).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    signal: Signal = Field(description="What deviated most from the service's normal.")
    observed: float = Field(description="The signal's value for this event (ms, or a ratio for error rate).")
    expected: float = Field(description="The service's expected value of the signal at that moment.")
    low: float = Field(description="Lower end of the service's normal band (about 2 spreads below expected).")
    high: float = Field(description="Upper end of the normal band.")
    unit: Literal["ms", "ratio"] = Field(description="Unit of observed, expected, low and high.")
    severity: float = Field(description="Score / alert threshold of the scoring model: above 1 is an anomaly.")
    basis: Literal["service", "all services"] = Field(
        description="service: this service's own history; all services: the point model's training data "
        "(while the service warms up)."
    )
    text: str | None = Field(
        default=None,
        description="One line for people, e.g. 'latency 1,480 ms, usually 190–260 ms'; written for alerts "
        "(severity above 1), null below (the other fields say the same).",
    )


IncidentEvent = Literal["opened", "updated", "resolved"]


class Incident(BaseModel):
    """One record of topic ``incidents``: an incident's state after ``event``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    incident_id: Annotated[str, Field(min_length=1, max_length=64)]
    event: IncidentEvent
    service: str
    status: Literal["open", "resolved"]
    started_at: float = Field(description="Event time of the first alert (epoch seconds).")
    last_alert_at: float = Field(description="Event time of the latest alert (epoch seconds).")
    resolved_at: float | None = Field(default=None, description="When it was resolved (event time, or wall clock).")
    resolution: Literal["recovered", "idle"] | None = Field(
        default=None, description="recovered: the service was normal long enough; idle: it stopped sending."
    )
    alerts: int = Field(description="Alert-worthy events so far.")
    first_event_id: str
    peak_event_id: str
    peak_score: float
    peak_severity: float
    signal: str = Field(description="The opening alert's signal (kept for the incident's life: a stable label).")
    explanation: Explanation | None = Field(description="The explanation of the peak event.")
