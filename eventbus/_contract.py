"""The published contract: JSON Schemas of the event and the verdict, generated from the one schema.

``python -m eventbus.schemas DIR`` writes them (``make schemas``: into ``docs/schema/``); the ML service
serves them at ``GET /schema/event`` and ``GET /schema/verdict``.
"""

from typing import Any

from eventbus._schema import EVENT_MAX_BYTES, LogEvent, Verdict

SCHEMA_FILES = {"event": "log-event.schema.json", "verdict": "verdict.schema.json"}


def json_schemas() -> dict[str, dict[str, Any]]:
    """``{"event": ..., "verdict": ...}``: JSON Schema (draft 2020-12) documents."""
    event = LogEvent.model_json_schema()
    event["description"] = (
        "One log event on the logs topic. Other fields are kept and carried into the verdict; "
        f"the whole message is at most {EVENT_MAX_BYTES} bytes."
    )
    verdict = Verdict.model_json_schema(mode="serialization")
    verdict["description"] = (
        "One verdict on the predictions topic: every field of its event as sent, plus event_id (the event's or "
        "'<topic>:<partition>:<offset>'), event_time (epoch seconds), anomaly, score and model_version."
    )
    for name, schema in (("event", event), ("verdict", verdict)):
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = SCHEMA_FILES[name]
    return {"event": event, "verdict": verdict}
