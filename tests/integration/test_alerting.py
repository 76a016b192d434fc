"""Incidents reach a real Alertmanager (and a plain webhook) once each, resolved after recovery, never lost.

Alertmanager pages a recording webhook (``pages``): what on-call people would get. Each test prints the time
from producing a level shift's first event to its alert being in Alertmanager's API.
"""

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer

from eventbus import Incident, KafkaSettings, LogEvent, Verdict
from streaming_detector.profiles import NormalProfile, generate_normal_events
from tests.integration.monitoring import Alertmanager, Recorder
from tests.integration.test_processor_pipeline import (  # noqa: F401 - fixtures used by name
    Processor,
    events_as_messages,
    ml_service,
    model_path,
    produce,
    read_until,
    start_processor,
    topic_reader,
)

pytestmark = pytest.mark.integration

PROFILE = NormalProfile(latency_median_ms=120.0, latency_sigma=0.2)
WARM, SHIFTED, AFTER = 400, 200, 300  # events of one service: history, level shift (x5), normal again
INTERVAL_S = 0.1  # event time between two events of a service


def service_stream(service: str, seed: int) -> tuple[list[LogEvent], list[LogEvent], list[LogEvent]]:
    events = generate_normal_events(WARM + SHIFTED + AFTER, services=[service], seed=seed, profile=PROFILE,
                                    interval_s=INTERVAL_S)  # fmt: skip
    shift = [
        e.model_copy(update={"latency_ms": round(e.latency_ms * 5, 3), "label": "level_shift"})
        for e in events[WARM : WARM + SHIFTED]
    ]
    return events[:WARM], shift, events[WARM + SHIFTED :]


def wait_for(predicate: Callable[[], Any], timeout_s: float, what: str, diagnostics: Callable[[], str]) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"{what} within {timeout_s}s\n{diagnostics()}")


def pages_for(pages: Recorder, incident: str, status: str) -> list[dict[str, Any]]:
    """Alertmanager's notifications with ``status`` naming ``incident``."""
    return [
        page
        for page in pages.posted("/pages")
        if page["status"] == status and any(a["labels"].get("incident_id") == incident for a in page["alerts"])
    ]


@pytest.fixture
def pages() -> Iterator[Recorder]:
    recorder = Recorder()
    yield recorder
    recorder.close()


@pytest.fixture
def alertmanager(tmp_path: Path, pages: Recorder) -> Iterator[Alertmanager]:
    manager = Alertmanager(tmp_path, f"{pages.url}/pages")
    yield manager
    manager.stop()


def processor_env(alertmanager: Alertmanager, **extra: str) -> dict[str, str]:
    return {
        "ALERTMANAGER_URL": alertmanager.url,
        "INCIDENT_RESOLVE_S": "10",
        "INCIDENT_RESOLVE_EVENTS": "20",
        "ALERT_REFRESH_S": "2",
        "PRINT_MODE": "events",
        **extra,
    }


def warm_up(producer: KafkaProducer, settings: KafkaSettings, processor: Processor, streams: list[list[LogEvent]]):
    events = [e for group in zip(*streams, strict=True) for e in group]
    produce(producer, settings.logs_topic, events_as_messages(events))
    processor.wait_for_output(lambda out: all(s[-1].event_id in out for s in streams), timeout_s=90)


def incidents_on_topic(reader: KafkaConsumer, done: Callable[[list[Incident]], bool]) -> list[Incident]:
    def parsed(records: list) -> list[Incident]:
        return [Incident.model_validate_json(r.value) for r in records]

    return parsed(read_until(reader, lambda records: done(parsed(records)), timeout_s=30))


def test_a_level_shift_pages_once_and_resolves_and_a_silence_mutes_the_next(
    kafka_settings: KafkaSettings,
    producer_factory: Callable[..., KafkaProducer],
    topic_reader: Callable[[str], KafkaConsumer],  # noqa: F811 - the imported fixture
    start_processor: Callable[..., Processor],  # noqa: F811 - the imported fixture
    alertmanager: Alertmanager,
    pages: Recorder,
) -> None:
    alertmanager.start()
    processor = start_processor(**processor_env(alertmanager))
    producer = producer_factory()
    streams = {name: service_stream(name, seed) for seed, name in enumerate(("payment", "search", "orders"))}
    warm_up(producer, kafka_settings, processor, [s[0] for s in streams.values()])

    def diagnostics() -> str:
        return f"{processor.diagnostics()}\n--- alertmanager ---\n{alertmanager.log()}\npages: {pages.bodies}"

    latencies = []
    silence = alertmanager.silence(service="orders")
    for name, (_, shift, after) in streams.items():
        started = time.time()
        produce(producer, kafka_settings.logs_topic, events_as_messages(shift))
        (alert,) = wait_for(lambda n=name: alertmanager.alerts(service=n), 60, f"no alert for {name}", diagnostics)
        latencies.append(time.time() - started)
        incident = alert["labels"]["incident_id"]
        assert alert["labels"]["alertname"] == "ServiceAnomaly" and alert["labels"]["severity"] in (
            "warning",
            "critical",
        )
        assert alert["labels"]["signal"] in ("latency level", "sustained shift", "latency step")
        assert " ms, usually " in alert["annotations"]["explanation"] and alert["annotations"]["dashboard"]
        if name == "orders":
            assert alert["status"]["state"] == "suppressed" and alert["status"]["silencedBy"] == [silence]
            time.sleep(3)  # group_wait is 0.1 s: a page would be there by now
        else:
            wait_for(lambda i=incident: pages_for(pages, i, "firing"), 30, f"no page for {name}", diagnostics)
        produce(producer, kafka_settings.logs_topic, events_as_messages(after))
        if name != "orders":
            wait_for(lambda i=incident: pages_for(pages, i, "resolved"), 30, f"{name} not resolved", diagnostics)
        else:
            wait_for(lambda n=name: not alertmanager.alerts(service=n), 30, "orders still active", diagnostics)
        # The shift kept firing while its 200 events were scored (the alert refreshed): still one alert.
        assert len(alertmanager.alerts(service=name)) == 0
        assert len(pages_for(pages, incident, "firing")) == (0 if name == "orders" else 1), pages.bodies

    records = incidents_on_topic(
        topic_reader(kafka_settings.incidents_topic),
        lambda got: sum(r.event == "resolved" for r in got) >= len(streams),
    )
    opened = [r for r in records if r.event == "opened"]
    assert sorted(r.service for r in opened) == sorted(streams), [
        (r.event, r.service, r.first_event_id, r.alerts, r.started_at, r.explanation) for r in records
    ]
    for record in records:
        assert record.explanation is not None and record.explanation.basis == "service"
    verdicts = [
        Verdict.model_validate_json(r.value)
        for r in read_until(topic_reader(kafka_settings.predictions_topic), lambda got: len(got) >= 2700, 30)
    ]
    assert all(v.explanation is not None for v in verdicts)
    # Every alert is marked; those of a service with a normal of its own belong to its incident.
    alerts = [v for v in verdicts if v.anomaly and v.explanation and v.explanation.basis == "service"]
    assert len(alerts) > 30 and {v.incident_id for v in alerts} == {r.incident_id for r in opened}
    history = {e.event_id for stream in streams.values() for e in stream[0]}
    assert not [v for v in alerts if v.event_id in history]  # the return to normal may alert, the history not
    print(f"\n[alert latency] first shifted event produced -> alert in Alertmanager: {latencies}")
    assert processor.stop() == 0, processor.diagnostics()


def test_receivers_down_for_a_while_lose_nothing_and_page_once(
    kafka_settings: KafkaSettings,
    producer_factory: Callable[..., KafkaProducer],
    start_processor: Callable[..., Processor],  # noqa: F811 - the imported fixture
    alertmanager: Alertmanager,
    pages: Recorder,
) -> None:
    webhook = pages  # the same recording server, another path
    webhook.fail = True  # the chat tool refuses (503) at first
    processor = start_processor(**processor_env(alertmanager, INCIDENT_WEBHOOK_URL=f"{webhook.url}/incidents"))
    producer = producer_factory()
    history, shift, after = service_stream("payment", seed=7)
    warm_up(producer, kafka_settings, processor, [history])

    def diagnostics() -> str:
        return f"{processor.diagnostics()}\n--- alertmanager ---\n{alertmanager.log()}\npages: {pages.bodies}"

    produce(producer, kafka_settings.logs_topic, events_as_messages(shift))
    processor.wait_for_output(lambda out: "▲ INCIDENT opened" in out)
    wait_for(lambda: webhook.refused >= 3, 30, "the webhook was not retried", diagnostics)
    time.sleep(3)  # Alertmanager stays down a while longer, a few retries of the alert fail
    assert "did not take" in processor.stderr_path.read_text()
    alertmanager.start()
    webhook.fail = False
    (alert,) = wait_for(lambda: alertmanager.alerts(service="payment"), 60, "alert never arrived", diagnostics)
    incident = alert["labels"]["incident_id"]
    wait_for(lambda: pages_for(pages, incident, "firing"), 30, "no page", diagnostics)
    produce(producer, kafka_settings.logs_topic, events_as_messages(after))
    wait_for(lambda: pages_for(pages, incident, "resolved"), 60, "never resolved", diagnostics)
    wait_for(lambda: len(webhook.posted("/incidents")) >= 2, 30, "webhook missed a record", diagnostics)
    time.sleep(2)  # anything sent twice would arrive by now
    assert len(pages_for(pages, incident, "firing")) == 1
    posted = webhook.posted("/incidents")
    assert [(p["incident_id"], p["event"]) for p in posted] == [(incident, "opened"), (incident, "resolved")]
    keys = [headers.get("Idempotency-Key") for path, _, headers in webhook.bodies if path == "/incidents"]
    assert keys == [f"{incident}:opened", f"{incident}:resolved"]
    assert Incident.model_validate(posted[1]).resolution == "recovered"
    assert processor.stop() == 0, processor.diagnostics()
    print(f"\n[alerting] receivers refused {webhook.refused} webhook posts while down; 1 page, 2 webhook posts")
