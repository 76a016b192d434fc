"""``make eval-pipeline``: a NAB-shaped corpus through a real broker, ML service and processor pages as offline."""

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.nab_pipeline import run
from streaming_detector import TrainingConfig

STEP_S = 300  # NAB's usual five minutes
ROWS = 720  # two and a half days


def write_corpus(root: Path) -> Path:
    """Two files in NAB's layout, each with one labelled incident (a spike, a level jump); the second has a
    negative value (the replay shifts such a file up)."""
    rng = np.random.default_rng(3)
    start = np.datetime64("2024-03-01T00:00:00")
    times = [str(start + np.timedelta64(i * STEP_S, "s")).replace("T", " ") for i in range(ROWS)]
    spike = 120.0 * rng.lognormal(0.0, 0.1, ROWS)
    spike[600:606] *= 6.0
    jump = 40.0 + rng.normal(0.0, 2.0, ROWS)
    jump[650:] += 60.0
    jump[200] = -5.0
    labels = {}
    for name, values, (left, right) in (("test/spike.csv", spike, (590, 630)), ("test/jump.csv", jump, (640, 680))):
        path = root / "data" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("timestamp,value\n" + "".join(f"{t},{v:.3f}\n" for t, v in zip(times, values, strict=True)))
        labels[name] = [[times[left] + ".000000", times[right] + ".000000"]]
    (root / "labels").mkdir()
    (root / "labels" / "combined_windows.json").write_text(json.dumps(labels))
    return root


def test_the_pipeline_pages_nab_incidents_as_the_offline_replay(tmp_path: Path, kafka_bootstrap: str) -> None:
    corpus = write_corpus(tmp_path / "nab")
    small = TrainingConfig(services=6, events_per_service=400)
    result = run(corpus, tmp_path, training=small, timeout_s=180, bootstrap=kafka_bootstrap)
    assert result["events"] == 2 * ROWS  # every event got its verdict (none dead-lettered, or run raises)
    assert result["windows"] == {"labelled": 2, "paged": 2}
    assert result["rows_with_different_pages"] == 0
    assert result["pages"]["pipeline"] == result["pages"]["offline"]
    standard = result["pipeline_pages"]["full"]["standard"]
    assert standard == result["offline_pages"]["full"]["standard"]
    assert standard > 50.0
    lost = sum(loss["points"] for loss in result["losses_standard"].values())
    assert lost == pytest.approx(100.0 - standard)  # the breakdown by category accounts for every point
