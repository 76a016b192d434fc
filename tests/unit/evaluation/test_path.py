"""``make eval`` scores with ``ContextualScorer`` in process; the processor with it over HTTP. Same verdicts.

The ML service's side is played in process by the real context model (what ``/predict/batch`` runs for an
item with a ``context``), behind the processor's ``HttpScorer``, so the only differences left are the
processor's own: micro-batches and the rounding of features on the wire. Neither applies the cool-down: every
event above the threshold is an alert, and ``make eval`` counts one page per incident, as the processor sends.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from anomaly_processor.ml_client import Contexts, HttpScorer, Score

from evaluation.cli import paged, replay
from evaluation.scenarios import build_scenario
from eventbus import LogEvent
from streaming_detector import ContextualScorer, InProcessModel, in_process_scorer
from tests.ml_context import small_context_model


class InProcessService(HttpScorer):
    """``/model`` and ``/predict/batch`` of the ML service, answered by the context model itself."""

    def __init__(self, forest: Any, metadata: dict[str, Any]) -> None:
        super().__init__("http://ml.in-process")
        self.model = InProcessModel(forest, metadata, version="test-model")

    def model_info(self) -> dict[str, Any]:
        return self.model.model_info()

    def score(self, events: Sequence[LogEvent], contexts: Contexts | None = None) -> list[Score]:
        assert contexts is not None
        return self.model.score(events, contexts)  # warming events: the point model's place, not compared here


@pytest.mark.parametrize("name", ["latency_spikes", "level_shifts", "new_service"])
def test_processor_scoring_path_gives_the_verdicts_make_eval_reports(name: str) -> None:
    forest, metadata = small_context_model(0)
    events = build_scenario(name, 3, scale=0.5).events
    expected = paged(events, replay(in_process_scorer(forest, metadata, cooldown=False), events, 500))
    scorer = ContextualScorer(InProcessService(forest, metadata), cooldown=False)
    got = [score for i in range(0, len(events), 333) for score in scorer.score(events[i : i + 333])]

    warm = expected.warm
    anomaly = np.array([s.anomaly for s in got])
    score = np.array([s.score for s in got])
    assert expected.anomaly[warm].sum() >= 1  # the stream has incidents the detector flags
    np.testing.assert_array_equal(anomaly[warm], expected.score[warm] > metadata["threshold"])
    assert np.all(anomaly[warm][expected.anomaly[warm]])  # every page of make eval is an alert here too
    assert anomaly[warm].sum() >= expected.anomaly[warm].sum()  # an incident's alerts are paged once
    # Features travel rounded to 1e-6; now and then that moves a value across one of the forest's splits.
    np.testing.assert_allclose(score[warm], expected.score[warm], atol=0.05)
