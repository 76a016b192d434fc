"""Validated scoring input as numpy columns, read from a JSON batch in bulk or from pydantic-validated items.

Validating a 10,000-item batch with pydantic costs more than parsing and scoring it together. The
batch's bulk reader (``columns_from_json``) decodes it with msgspec straight into typed items that carry
the schema's rules, in one C pass: exact types (a bool or a string is not a number), bounds and string
lengths from ``eventbus``'s field types, unknown fields skipped, no explicit null where pydantic refuses one
(a timestamp string is then read as pydantic reads it); JSON has no NaN
or Infinity, and a number beyond float's range is refused, so every number is finite. It only ever
accepts: a body it cannot vouch for returns None, and the caller validates it with pydantic, which
accepts it or names every bad field. So the rules and the 422 messages stay pydantic's; the bulk reader
only makes valid bodies cheap.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from operator import attrgetter
from typing import Annotated, Any, Final

import msgspec
import numpy as np
from annotated_types import Ge, Le, MaxLen, MinLen
from numpy.typing import NDArray
from pydantic.types import AllowInfNan

from eventbus import TIMESTAMP_TEXT_MAX, ErrorRate, EventId, Label, LatencyMs, ServiceName, epoch_seconds
from ml_service.schemas import MAX_CONTEXT_FEATURES, PredictRequest


@dataclass(frozen=True)
class ScoringColumns:
    """A batch's model inputs: one row per item; items with ``context`` listed with their flattened features."""

    latency_ms: NDArray[np.float64]
    error_rate: NDArray[np.float64]
    context_rows: NDArray[np.intp]  # indices of the items that carry a context, ascending
    context_lengths: NDArray[np.intp]  # each one's number of features
    context_values: NDArray[np.float64]  # all their features, concatenated in row order

    def __len__(self) -> int:
        return len(self.latency_ms)


def _meta(field_type: Any) -> msgspec.Meta:
    """The bounds of an ``Annotated`` field type of ``eventbus`` as msgspec constraints."""
    found: dict[str, Any] = {}
    constraints = [c for info in field_type.__metadata__ for c in getattr(info, "metadata", [info])]
    for constraint in constraints:
        if isinstance(constraint, Ge):
            found["ge"] = constraint.ge
        elif isinstance(constraint, Le):
            found["le"] = constraint.le
        elif isinstance(constraint, MinLen):
            found["min_length"] = constraint.min_length
        elif isinstance(constraint, MaxLen):
            found["max_length"] = constraint.max_length
        elif not (isinstance(constraint, AllowInfNan) and not constraint.allow_inf_nan):
            # A new kind of rule in the schema must be taught here, or the bulk reader would let it pass.
            raise TypeError(f"the bulk reader does not know the constraint {constraint!r}")
    return msgspec.Meta(**found)


class _Item(msgspec.Struct, gc=False):
    """``PredictRequest`` for msgspec: same fields, rules and strictness (gc=False: no cycles, 10k fewer GC objects)."""

    latency_ms: Annotated[float, _meta(LatencyMs)]
    error_rate: Annotated[float, _meta(ErrorRate)]
    event_id: Annotated[str, _meta(EventId)] | None = None
    timestamp: (
        Annotated[float, msgspec.Meta(ge=0)]
        | Annotated[str, msgspec.Meta(min_length=1, max_length=TIMESTAMP_TEXT_MAX)]
        | None
    ) = None
    service: Annotated[str, _meta(ServiceName)] | None = None
    label: Annotated[str, _meta(Label)] | None = None
    # UNSET, not None: an explicit ``"context": null`` is refused, as pydantic does.
    context: msgspec.UnsetType | Annotated[list[float], msgspec.Meta(min_length=1, max_length=MAX_CONTEXT_FEATURES)] = (
        msgspec.UNSET
    )


if set(PredictRequest.__annotations__) != set(_Item.__struct_fields__):
    raise TypeError("PredictRequest's fields changed: teach the bulk reader in ml_service.api.columns")

_DECODER: Final = msgspec.json.Decoder(list[_Item])
_latency_of: Final = attrgetter("latency_ms")
_error_rate_of: Final = attrgetter("error_rate")
_context_of: Final = attrgetter("context")


def _readable_time(item: _Item) -> bool:
    if not isinstance(item.timestamp, str):
        return True
    try:
        epoch_seconds(item.timestamp)
    except ValueError:
        return False
    return True


def columns_from_json(body: bytes, max_items: int) -> ScoringColumns | None:
    """The columns of a JSON array of at most ``max_items`` valid requests, or None if not certainly valid."""
    try:
        items = _DECODER.decode(body)
    # Invalid UTF-8 in a string is a UnicodeDecodeError; a deeply nested unknown field, skipped, a RecursionError.
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError):
        return None
    count = len(items)
    if count > max_items or not all(map(_readable_time, items)):
        return None
    latency_ms = np.fromiter(map(_latency_of, items), dtype=np.float64, count=count)
    error_rate = np.fromiter(map(_error_rate_of, items), dtype=np.float64, count=count)
    contexts = list(map(_context_of, items))
    if contexts.count(msgspec.UNSET) == count:
        rows: list[int] = []
        given: list[list[float]] = []
    else:
        rows = [i for i, context in enumerate(contexts) if context is not msgspec.UNSET]
        given = [contexts[i] for i in rows]
    lengths = np.fromiter(map(len, given), dtype=np.intp, count=len(given))
    values = np.fromiter(chain.from_iterable(given), dtype=np.float64, count=int(lengths.sum()))
    # Already certain (JSON cannot spell a non-finite number, msgspec refuses one out of range); cheap to recheck.
    if not (np.isfinite(latency_ms).all() and np.isfinite(error_rate).all() and np.isfinite(values).all()):
        return None
    return ScoringColumns(latency_ms, error_rate, np.array(rows, dtype=np.intp), lengths, values)


def columns_from_requests(requests: Sequence[PredictRequest]) -> ScoringColumns:
    """The columns of requests pydantic has already validated."""
    count = len(requests)
    rows = [i for i, request in enumerate(requests) if "context" in request]
    contexts = [requests[i]["context"] for i in rows]
    return ScoringColumns(
        latency_ms=np.fromiter((r["latency_ms"] for r in requests), dtype=np.float64, count=count),
        error_rate=np.fromiter((r["error_rate"] for r in requests), dtype=np.float64, count=count),
        context_rows=np.array(rows, dtype=np.intp),
        context_lengths=np.fromiter(map(len, contexts), dtype=np.intp, count=len(contexts)),
        context_values=np.fromiter(chain.from_iterable(contexts), dtype=np.float64),
    )
