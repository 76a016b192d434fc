"""The model files: training, the sha256 check before unpickling, and the compiled scorer."""

import hashlib
import json
from pathlib import Path

import ml_service.model as model_module
import numpy as np
import pytest
from ml_service.errors import ModelError, ModelIntegrityError, ModelNotFoundError
from ml_service.model import load_bundle, metadata_path_for
from ml_service.point_forest import CompiledForest
from ml_service.settings import DEFAULT_MODEL_PATH, MLSettings
from ml_service.training import simulated_training_data
from sklearn.ensemble import IsolationForest

from tests.ml_context import save_small_bundle


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_small_bundle(tmp_path_factory.mktemp("model"), seed=3, rows=4000)


@pytest.fixture
def model_copy(saved_model: Path, tmp_path: Path) -> Path:
    """A private copy of the saved model that a test may damage."""
    path = tmp_path / "model.joblib"
    path.write_bytes(saved_model.read_bytes())
    metadata_path_for(path).write_bytes(metadata_path_for(saved_model).read_bytes())
    return path


def test_saved_model_loads_with_version_from_its_hash(saved_model: Path) -> None:
    bundle = load_bundle(saved_model)
    manifest = json.loads(metadata_path_for(saved_model).read_text())
    digest = hashlib.sha256(saved_model.read_bytes()).hexdigest()
    assert bundle.sha256 == manifest["sha256"] == digest
    assert bundle.version == manifest["version"] == f"iforest-{digest[:12]}"
    assert bundle.metadata.features == ["latency_ms", "error_rate"]
    assert bundle.metadata.training.rows == 4000
    summary = bundle.metadata.training.features["error_rate"]
    assert 0 <= summary.min <= summary.mean <= summary.max <= 1


def test_threshold_flags_the_contamination_share_of_training_data(saved_model: Path) -> None:
    bundle = load_bundle(saved_model)
    data = simulated_training_data(4000, seed=3)
    anomaly, score = bundle.predict(data.latency_ms, data.error_rate)
    assert anomaly.mean() == pytest.approx(bundle.metadata.contamination, abs=0.002)
    np.testing.assert_array_equal(anomaly, score > bundle.metadata.threshold)


def test_one_changed_byte_is_refused_before_unpickling(model_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = bytearray(model_copy.read_bytes())
    data[len(data) // 2] ^= 0x01
    model_copy.write_bytes(bytes(data))

    def unpickle_attempted(*args: object, **kwargs: object) -> None:
        raise AssertionError("a file that failed its hash check was unpickled")

    monkeypatch.setattr(model_module.joblib, "load", unpickle_attempted)
    with pytest.raises(ModelIntegrityError, match="sha256 of .*model.joblib.*refusing to unpickle"):
        load_bundle(model_copy)


def test_missing_metadata_is_refused(model_copy: Path) -> None:
    metadata_path_for(model_copy).unlink()
    with pytest.raises(ModelIntegrityError, match=r"model\.json is missing"):
        load_bundle(model_copy)


def test_edited_metadata_is_refused(model_copy: Path) -> None:
    manifest_path = metadata_path_for(model_copy)
    manifest = json.loads(manifest_path.read_text())
    manifest["threshold"] = 0.99  # the hash still matches the joblib file, the metadata inside does not
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ModelIntegrityError, match="disagrees"):
        load_bundle(model_copy)


def test_malformed_metadata_is_refused(model_copy: Path) -> None:
    metadata_path_for(model_copy).write_text("{not json")
    with pytest.raises(ModelIntegrityError, match="not valid model metadata"):
        load_bundle(model_copy)


def test_missing_model_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="save_model.py"):
        load_bundle(tmp_path / "model.joblib")


def test_a_directory_instead_of_a_file_is_a_model_error(tmp_path: Path) -> None:
    (tmp_path / "model.joblib").mkdir()
    with pytest.raises(ModelError, match="cannot read"):
        load_bundle(tmp_path / "model.joblib")


def test_compiled_scores_equal_scikit_learn(saved_model: Path) -> None:
    bundle = load_bundle(saved_model)
    rng = np.random.default_rng(7)
    # inside, around and far outside the training range, plus points exactly on split thresholds
    latency = np.concatenate([rng.uniform(0, 2000, 3000), rng.lognormal(5.3, 0.3, 3000)])
    error = np.concatenate([rng.uniform(0, 1, 3000), rng.beta(2, 398, 3000)])
    trees = [e.tree_ for e in bundle.forest.estimators_[:5]]
    latency_cuts = np.concatenate([t.threshold[t.feature == 0] for t in trees])
    error_cuts = np.concatenate([t.threshold[t.feature == 1] for t in trees])
    latency = np.concatenate([latency, latency_cuts, np.full(len(error_cuts), 200.0)])
    error = np.concatenate([error, np.full(len(latency_cuts), 0.005), error_cuts])
    x = np.column_stack([latency, error])
    np.testing.assert_allclose(bundle.score(latency, error), -bundle.forest.score_samples(x), rtol=1e-12, atol=0)


def test_one_row_scores_equal_the_batch_scores_to_the_bit(saved_model: Path) -> None:
    bundle = load_bundle(saved_model)
    rng = np.random.default_rng(11)
    trees = [e.tree_ for e in bundle.forest.estimators_[:5]]
    latency_cuts = np.concatenate([t.threshold[t.feature == 0] for t in trees])
    error_cuts = np.concatenate([t.threshold[t.feature == 1] for t in trees])
    huge = [0.0, 1e30, 3.4028234663852886e38, 3.5e38, 1e300]  # at and beyond float32's range
    latency = np.concatenate([rng.lognormal(5.3, 1.0, 2000), latency_cuts, huge, np.full(len(error_cuts), 210.0)])
    error = np.concatenate([rng.uniform(0, 1, 2000), np.full(len(latency_cuts), 0.01), [0.5] * len(huge), error_cuts])
    anomaly, score = bundle.predict(latency, error)
    one_by_one = [bundle.predict_one(lat, err) for lat, err in zip(latency.tolist(), error.tolist(), strict=True)]
    assert [s for _, s in one_by_one] == score.tolist()
    assert [a for a, _ in one_by_one] == anomaly.tolist()


def test_compiled_scores_equal_scikit_learn_with_a_constant_feature() -> None:
    rng = np.random.default_rng(1)
    x = np.column_stack([rng.normal(200, 30, 500), np.zeros(500)])  # no split can use feature 1
    forest = IsolationForest(n_estimators=20, random_state=0).fit(x)
    probe = np.column_stack([rng.normal(200, 80, 300), rng.uniform(-1, 1, 300)])
    np.testing.assert_allclose(CompiledForest(forest).score(probe), -forest.score_samples(probe), rtol=1e-12)


def test_compiled_forest_needs_two_features() -> None:
    forest = IsolationForest(n_estimators=2, random_state=0).fit(np.random.default_rng(0).normal(size=(50, 3)))
    with pytest.raises(ValueError, match="2 features"):
        CompiledForest(forest)


def test_default_model_path_is_in_the_service_folder_whatever_the_cwd(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("MODEL_PATH", raising=False)
    monkeypatch.chdir(tmp_path)
    assert MLSettings().model_path == DEFAULT_MODEL_PATH
    assert DEFAULT_MODEL_PATH.parent.name == "fastapi-ml-service"
    assert (DEFAULT_MODEL_PATH.parent / "main.py").is_file()


def test_empty_api_keys_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ML_API_KEY", "")
    monkeypatch.setenv("ML_SCORING_API_KEY", "")
    settings = MLSettings()
    assert settings.ml_api_key is None
    assert settings.ml_scoring_api_key is None
