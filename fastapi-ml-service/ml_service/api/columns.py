"""Validated scoring input as numpy columns, read from a JSON batch in bulk or from pydantic-validated items.

Validating a 10,000-item batch with pydantic costs more than parsing and scoring it together. The
batch's bulk reader (``columns_from_json``) parses it with orjson and checks each field as a whole
column, in C loops (``map``, ``set``, numpy): exact types (a bool or a string is not a number),
finiteness, bounds and string lengths from ``schemas``, no unknown field. It only ever accepts: a body
it cannot vouch for (a failed check, a rare shape such as an explicit ``null``, JSON orjson refuses)
returns None, and the caller validates it with pydantic, which accepts it or names every bad field.
So the rules and the 422 messages stay pydantic's; the bulk reader only makes valid bodies cheap.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from typing import Any, Final

import numpy as np
import orjson
from annotated_types import Ge, Le, MaxLen, MinLen
from numpy.typing import NDArray
from pydantic.types import AllowInfNan

from ml_service.schemas import (
    ERROR_RATE_RULES,
    EVENT_ID_RULES,
    LABEL_RULES,
    LATENCY_RULES,
    MAX_CONTEXT_FEATURES,
    SERVICE_RULES,
    TIMESTAMP_RULES,
    PredictRequest,
)

_NUMBER_TYPES: Final = frozenset({float, int})  # strict: bool is not int here
_TEXT_TYPES: Final = frozenset({str, type(None)})


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


@dataclass(frozen=True)
class _Rules:
    """Bounds of one field, read from its pydantic constraints."""

    ge: float | None = None
    le: float | None = None
    min_length: int = 0
    max_length: int | None = None


def _rules(metadata: Sequence[Any]) -> _Rules:
    found: dict[str, Any] = {}
    for constraint in metadata:
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
    return _Rules(**found)


_NUMBER_FIELDS: Final = {"latency_ms": _rules(LATENCY_RULES), "error_rate": _rules(ERROR_RATE_RULES)}
_TEXT_FIELDS: Final = {
    "event_id": _rules(EVENT_ID_RULES),
    "timestamp": _rules(TIMESTAMP_RULES),
    "service": _rules(SERVICE_RULES),
    "label": _rules(LABEL_RULES),
}
_CONTEXT_FIELD: Final = "context"
if set(PredictRequest.__annotations__) != {*_NUMBER_FIELDS, *_TEXT_FIELDS, _CONTEXT_FIELD}:
    raise TypeError("PredictRequest's fields changed: teach the bulk reader in ml_service.api.columns")


def columns_from_json(body: bytes, max_items: int) -> ScoringColumns | None:
    """The columns of a JSON array of at most ``max_items`` valid requests, or None if not certainly valid."""
    try:
        items = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if type(items) is not list or len(items) > max_items:
        return None
    if not items:
        return _empty_columns()
    if set(map(type, items)) != {dict}:
        return None
    count = len(items)
    keys_seen = 0  # every key of every item must be one of the known fields: counted, not looked up
    numbers: dict[str, NDArray[np.float64]] = {}
    for name, rules in _NUMBER_FIELDS.items():
        column = _number_column(list(map(dict.get, items, repeat(name))), rules)
        if column is None:
            return None
        numbers[name] = column
        keys_seen += count
    for name, rules in _TEXT_FIELDS.items():
        present = _text_present(list(map(dict.get, items, repeat(name))), rules)
        if present is None:
            return None
        keys_seen += present
    contexts = list(map(dict.get, items, repeat(_CONTEXT_FIELD)))
    rows = [] if contexts.count(None) == count else [i for i, context in enumerate(contexts) if context is not None]
    keys_seen += len(rows)
    # An explicit null is counted as absent above, so it fails this check too: pydantic decides.
    if sum(map(len, items)) != keys_seen:
        return None
    context = _context_columns([contexts[i] for i in rows]) if rows else _empty_context()
    if context is None:
        return None
    lengths, values = context
    return ScoringColumns(numbers["latency_ms"], numbers["error_rate"], np.array(rows, dtype=np.intp), lengths, values)


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


def _number_column(values: list[Any], rules: _Rules) -> NDArray[np.float64] | None:
    if not set(map(type, values)) <= _NUMBER_TYPES:
        return None  # a missing field (None), a bool, a string...
    column = np.array(values, dtype=np.float64)
    valid = np.isfinite(column)
    if rules.ge is not None:
        valid &= column >= rules.ge
    if rules.le is not None:
        valid &= column <= rules.le
    return column if bool(valid.all()) else None


def _text_present(values: list[Any], rules: _Rules) -> int | None:
    """How many items carry this optional text field, or None if one is not a string of an allowed length."""
    types = set(map(type, values))
    if not types <= _TEXT_TYPES:
        return None
    if str not in types:
        return 0  # absent (or null) everywhere
    texts = values if type(None) not in types else [v for v in values if v is not None]
    lengths = np.fromiter(map(len, texts), dtype=np.intp, count=len(texts))
    if int(lengths.min()) < rules.min_length or (
        rules.max_length is not None and int(lengths.max()) > rules.max_length
    ):
        return None
    return len(texts)


def _context_columns(contexts: list[Any]) -> tuple[NDArray[np.intp], NDArray[np.float64]] | None:
    if set(map(type, contexts)) != {list}:
        return None
    lengths = np.fromiter(map(len, contexts), dtype=np.intp, count=len(contexts))
    if int(lengths.min()) < 1 or int(lengths.max()) > MAX_CONTEXT_FEATURES:
        return None
    flat = list(chain.from_iterable(contexts))
    if not set(map(type, flat)) <= _NUMBER_TYPES:
        return None
    values = np.array(flat, dtype=np.float64)
    return (lengths, values) if bool(np.isfinite(values).all()) else None


def _empty_context() -> tuple[NDArray[np.intp], NDArray[np.float64]]:
    return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.float64)


def _empty_columns() -> ScoringColumns:
    no_rows = np.zeros(0, dtype=np.float64)
    lengths, values = _empty_context()
    return ScoringColumns(no_rows, no_rows, np.zeros(0, dtype=np.intp), lengths, values)
