"""The published event contract: JSON Schemas of the event (topic ``logs``) and the verdict (``predictions``)."""

from typing import Any, Literal

from fastapi import APIRouter

from eventbus import json_schemas

router = APIRouter(prefix="/schema", tags=["schema"])
_SCHEMAS = json_schemas()


@router.get("/{name}", summary="JSON Schema of the event or the verdict")
async def schema(name: Literal["event", "verdict"]) -> dict[str, Any]:
    """``event``: what producers may send to ``logs``; ``verdict``: what the processor writes to ``predictions``."""
    return _SCHEMAS[name]
