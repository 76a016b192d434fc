"""``make eval`` scores with ``ContextDetector``; the processor with ``ContextualScorer`` over HTTP. Same verdicts.

The ML service's side is played in process by the real context model (what ``/predict/batch`` runs for an
item with a ``context``), so the only differences left are the processor's own: micro-batches, the
feature cache, the rounding of features on the wire, and no cool-down (the processor marks every event above
the threshold and groups them into incidents; ``make eval`` mutes what follows an alert).
"""

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from anomaly_processor.context import ContextualScorer
from anomaly_processor.scoring import Contexts, HttpScorer, Score
from ml_service.detector import ContextDetector, ContextModel
from ml_service.evaluation.cli import replay
from ml_service.evaluation.scenarios import build_scenario

from eventbus import LogEvent
from tests.unit.ml_context import small_context_model


class InProcessService(HttpScorer):
    """``/model`` and ``/predict/batch`` of the ML service, answered by the context model itself."""

    def __init__(self, forest: Any, metadata: dict[str, Any]) -> None:
        super().__init__("http://ml.in-process")
        self.metadata = metadata
        self.model = ContextModel.from_metadata(forest, metadata)

    def model_info(self) -> dict[str, Any]:
        cooldown = self.metadata["training"]["cooldown_events"]
        gate = {"threshold": self.metadata["threshold"], "cooldown_events": cooldown}
        return {"version": "test-model", "context": {**self.metadata, "gate": gate}}

    def score(self, events: Sequence[LogEvent], contexts: Contexts | None = None) -> list[Score]:
        assert contexts is not None
        warm = [i for i, c in enumerate(contexts) if c is not None]
        scores = [Score(False, 0.0, "test-model")] * len(events)  # the point model's place: not compared here
        if warm:
            raw = self.model.score(np.array([contexts[i] for i in warm]))
            for i, value in zip(warm, raw.tolist(), strict=True):
                scores[i] = Score(value > self.metadata["threshold"], value, "test-model")
        return scores


@pytest.mark.parametrize("name", ["latency_spikes", "level_shifts", "new_service"])
def test_processor_scoring_path_gives_the_verdicts_make_eval_reports(name: str) -> None:
    forest, metadata = small_context_model(0)
    events = build_scenario(name, 3, scale=0.5).events
    expected = replay(
        ContextDetector.from_metadata(forest, metadata),
        [e.service for e in events],
        np.array([e.latency_ms for e in events]),
        np.array([e.error_rate for e in events]),
        500,
    )
    scorer = ContextualScorer(InProcessService(forest, metadata))
    got = [score for i in range(0, len(events), 333) for score in scorer.score(events[i : i + 333])]

    warm = expected.warm
    anomaly = np.array([s.anomaly for s in got])
    score = np.array([s.score for s in got])
    assert expected.anomaly[warm].sum() >= 1  # the stream has incidents the detector flags
    np.testing.assert_array_equal(anomaly[warm], expected.score[warm] > metadata["threshold"])
    assert np.all(anomaly[warm][expected.anomaly[warm]])  # every alert of make eval is one here too
    # Features travel rounded to 1e-6; now and then that moves a value across one of the forest's splits.
    np.testing.assert_allclose(score[warm], expected.score[warm], atol=0.05)
