"""``save_model.py`` without a broker: trains on the simulator's profile and writes a loadable model."""

import json
from pathlib import Path

import pytest
from ml_service.model import load_bundle, metadata_path_for
from ml_service.training import main

from tests.ml_context import SMALL_CONTEXT_ARGS


def test_writes_a_model_the_service_can_load(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "models" / "model.joblib"
    assert (
        main(["--output", str(output), "--count", "2500", "--seed", "4", "--services", "a,b", *SMALL_CONTEXT_ARGS]) == 0
    )
    bundle = load_bundle(output)
    manifest = json.loads(metadata_path_for(output).read_text())
    assert manifest["version"] == bundle.version and manifest["model_file"] == "model.joblib"
    assert bundle.metadata.training.rows == 2500
    assert bundle.metadata.training.source == "simulator seed=4 services=a,b"
    printed = capsys.readouterr().out
    assert bundle.version in printed and str(output) in printed


def test_model_path_env_is_the_default_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_PATH", str(tmp_path / "env-model.joblib"))
    assert main(["--count", "1500", *SMALL_CONTEXT_ARGS]) == 0
    assert load_bundle(tmp_path / "env-model.joblib").metadata.training.rows == 1500


def test_too_few_events_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "model.joblib"
    assert main(["--output", str(output), "--count", "500"]) == 1
    assert "only 500 usable events" in capsys.readouterr().err
    assert not output.exists()


@pytest.mark.parametrize(
    "argv",
    [["--contamination", "0.7"], ["--count", "0"], ["--context-services", "0"], ["--context-events-per-service", "0"]],
)
def test_bad_options_are_refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "must be" in capsys.readouterr().err
