"""``InProcessModel``: the ``ModelClient`` that runs the context model in this process (evaluation, tests).

It answers what the ML service's ``GET /model`` and ``POST /predict/batch`` answer for items with a
``context``; an event of a service still warming up gets ``anomaly=False, score=0.0`` (no point model here).
"""

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np

from streaming_detector.forest import ContextModel
from streaming_detector.gate import GateConfig, Sensitivity
from streaming_detector.scorer import Contexts, ContextualScorer, Event, Score


class InProcessModel:
    """The context model a ``train_context_model`` forest and metadata describe, scored in this process."""

    base_url = "in-process"
    context_decimals: int | None = None  # nothing travels: the features are scored as computed

    def __init__(self, forest: Any, metadata: Mapping[str, Any], version: str = "in-process") -> None:
        self.metadata = dict(metadata)
        self.version = version
        self.model = ContextModel.from_metadata(forest, metadata)
        self.threshold = float(metadata["threshold"])

    def model_info(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "context": {**self.metadata, "gate": asdict(GateConfig.from_metadata(self.metadata))},
        }

    def score(self, events: Sequence[Event], contexts: Contexts | None = None) -> list[Score]:
        contexts = [None] * len(events) if contexts is None else contexts
        warm = [i for i, context in enumerate(contexts) if context is not None]
        scores = [Score(False, 0.0, self.version)] * len(events)
        if warm:
            raw = self.model.score(np.array([contexts[i] for i in warm], dtype=np.float64))
            for i, value in zip(warm, raw.tolist(), strict=True):
                scores[i] = Score(value > self.threshold, value, self.version)
        return scores

    def ready(self) -> bool:
        return True

    def close(self) -> None:
        pass


def in_process_scorer(
    forest: Any,
    metadata: Mapping[str, Any],
    *,
    cache_events: int = 10_000,
    cooldown: bool = True,
    sensitivity: Sensitivity | None = None,
) -> ContextualScorer:
    """The streaming detector in one process: ``ContextualScorer`` over ``InProcessModel``."""
    return ContextualScorer(
        InProcessModel(forest, metadata), cache_events=cache_events, cooldown=cooldown, sensitivity=sensitivity
    )
