"""The served models, their metadata, and their files.

A bundle holds two IsolationForests, trained and saved together:

* the point model on raw [latency_ms, error_rate]: the stateless answer for one event with no history;
* the context model (``streaming_detector``) on per-service context features the processor computes
  (``ContextTracker``) and sends in the request's ``context`` field.

On disk a bundle is two files (see ``save_bundle``):

* ``model.joblib``: both pickled forests together with their metadata;
* ``model.json``: the same metadata plus the sha256 of ``model.joblib`` and the version derived from it,
  so one version names both models.

joblib is pickle, and unpickling runs code: ``load_bundle`` reads the file once, checks its sha256
against ``model.json`` BEFORE unpickling those exact bytes, then checks both metadata copies agree.

Features are raw ``latency_ms`` and ``error_rate``. An IsolationForest draws every split uniformly
between the feature's min and max in the node, so rescaling a feature (ms vs s, z-scores) changes
nothing: units cannot dominate. A non-linear transform does change the tails, and log latency
measured worse: healthy latency is log-normal, its long right tail is where spikes land, and the log
folds it into a symmetric bell (docs/tuning.md).
"""

import hashlib
import hmac
import io
import logging
import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import joblib
import numpy as np
import orjson
import sklearn
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sklearn.ensemble import IsolationForest

from ml_service.errors import ModelError, ModelIntegrityError, ModelNotFoundError
from ml_service.point_forest import CompiledForest
from streaming_detector import ContextModel, GateConfig
from streaming_detector.tracker import HISTORY_FEATURES

log = logging.getLogger(__name__)

POINT_FEATURES: Final = ("latency_ms", "error_rate")
FORMAT_VERSION: Final = 4  # raised whenever a saved model cannot be read as before (history: docs/tuning.md)
VERSION_PREFIX: Final = "iforest-"


class FeatureSummary(BaseModel):
    """Distribution of one feature in the training data."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mean: float
    std: float
    min: float
    max: float


class TrainingSummary(BaseModel):
    """What the model was trained on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str = Field(description="Where the events came from, e.g. 'simulator seed=0' or 'topic logs'.")
    rows: int = Field(description="Events the forest was fitted on.")
    features: dict[str, FeatureSummary]


class ModelMetadata(BaseModel):
    """Everything about a trained model except its file's hash; stored inside the pickle and in the JSON."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: int = FORMAT_VERSION
    trained_at: str = Field(description="UTC time of training, ISO 8601.")
    features: list[str] = Field(description="Model inputs, in column order.")
    training: TrainingSummary
    contamination: float = Field(description="Share of the training events scored above the threshold.")
    threshold: float = Field(description="A score above this is an anomaly.")
    n_estimators: int
    max_samples: int
    random_state: int
    sklearn_version: str


class ModelManifest(ModelMetadata):
    """The ``model.json`` file: both models' metadata, the sha256 of the joblib file and the version derived from it."""

    context: dict[str, Any] = Field(description="The context model's metadata (``train_context_model``).")

    model_file: str = Field(description="Name of the joblib file next to this one.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    version: str


@dataclass(frozen=True)
class ModelBundle:
    """A loaded bundle: the point forest, its metadata and compiled scorer; the context model and its metadata."""

    forest: IsolationForest
    metadata: ModelMetadata
    sha256: str
    scorer: CompiledForest = field(repr=False)
    context_metadata: dict[str, Any] = field(repr=False)
    context_model: ContextModel = field(repr=False)

    @property
    def version(self) -> str:
        return version_for(self.sha256)

    @property
    def context_features(self) -> list[str]:
        """Names of the context feature vector's entries, in order: a ``context`` field has this many floats."""
        return list(self.context_metadata["features"])

    @property
    def context_threshold(self) -> float:
        """A raw context score above this is anomalous (before the processor's cool-down)."""
        return float(self.context_metadata["threshold"])

    @property
    def gate_config(self) -> GateConfig:
        """How the processor turns raw context scores into alerts (threshold and cool-down)."""
        return GateConfig.from_metadata(self.context_metadata)

    def predict_context(self, features: NDArray[np.float64]) -> tuple[NDArray[np.bool_], NDArray[np.float64]]:
        """``(anomaly, raw score)`` per row of context features (n x k), ``anomaly == score > context threshold``."""
        scores = self.context_model.score(features)
        return scores > self.context_threshold, scores

    def score(self, latency_ms: NDArray[np.float64], error_rate: NDArray[np.float64]) -> NDArray[np.float64]:
        """Anomaly score per event, higher = more anomalous (``-IsolationForest.score_samples``)."""
        return self.scorer.score(feature_matrix(latency_ms, error_rate))

    def predict(
        self, latency_ms: NDArray[np.float64], error_rate: NDArray[np.float64]
    ) -> tuple[NDArray[np.bool_], NDArray[np.float64]]:
        """``(anomaly, score)`` per event, with ``anomaly == score > threshold``."""
        scores = self.score(latency_ms, error_rate)
        return scores > self.metadata.threshold, scores

    def predict_one(self, latency_ms: float, error_rate: float) -> tuple[bool, float]:
        """``predict`` of one event: the same verdict and score, at a fraction of the cost for a single row."""
        score = self.scorer.score_one(latency_ms, error_rate)
        return score > self.metadata.threshold, score


def feature_matrix(latency_ms: NDArray[np.float64], error_rate: NDArray[np.float64]) -> NDArray[np.float64]:
    """The model's input matrix (n x 2), columns in ``POINT_FEATURES`` order."""
    return np.column_stack([np.asarray(latency_ms, dtype=np.float64), np.asarray(error_rate, dtype=np.float64)])


def version_for(sha256: str) -> str:
    return f"{VERSION_PREFIX}{sha256[:12]}"


def metadata_path_for(model_path: Path) -> Path:
    """``model.json`` next to ``model.joblib``."""
    return model_path.with_suffix(".json")


def train_model(
    latency_ms: NDArray[np.float64],
    error_rate: NDArray[np.float64],
    *,
    source: str,
    contamination: float = 0.01,
    n_estimators: int = 100,
    max_samples: int = 256,
    seed: int = 0,
) -> tuple[IsolationForest, ModelMetadata]:
    """Fit the forest on healthy events; the threshold flags ``contamination`` of them."""
    if not 0 < contamination < 0.5:
        raise ValueError(f"contamination must be in (0, 0.5), got {contamination}")
    x = feature_matrix(latency_ms, error_rate)
    forest = IsolationForest(n_estimators=n_estimators, max_samples=min(max_samples, len(x)), random_state=seed)
    forest.fit(x)
    scores = CompiledForest(forest).score(x)
    # Threshold from the training scores: the (1 - contamination) quantile, so that share is flagged.
    threshold = float(np.quantile(scores, 1.0 - contamination))
    metadata = ModelMetadata(
        trained_at=datetime.now(UTC).isoformat(timespec="seconds"),
        features=list(POINT_FEATURES),
        training=TrainingSummary(
            source=source,
            rows=len(x),
            features={
                name: FeatureSummary(
                    mean=float(column.mean()),
                    std=float(column.std()),
                    min=float(column.min()),
                    max=float(column.max()),
                )
                for name, column in zip(POINT_FEATURES, x.T, strict=True)
            },
        ),
        contamination=contamination,
        threshold=threshold,
        n_estimators=n_estimators,
        max_samples=int(forest.max_samples_),
        random_state=seed,
        sklearn_version=sklearn.__version__,
    )
    return forest, metadata


def save_bundle(
    forest: IsolationForest,
    metadata: ModelMetadata,
    context_forest: IsolationForest,
    context_metadata: dict[str, Any],
    model_path: Path,
) -> ModelManifest:
    """Write both models to ``model.joblib`` and ``model.json`` (each atomically, joblib first); return the manifest.

    ``context_forest`` and ``context_metadata`` are what ``streaming_detector.train_context_model`` returns.
    """
    model_path.parent.mkdir(parents=True, exist_ok=True)
    context_metadata = _json_round_trip(context_metadata)
    buffer = io.BytesIO()
    joblib.dump(
        {
            "forest": forest,
            "metadata": metadata.model_dump(mode="json"),
            "context_forest": context_forest,
            "context_metadata": context_metadata,
        },
        buffer,
    )
    data = buffer.getvalue()
    sha256 = hashlib.sha256(data).hexdigest()
    manifest = ModelManifest(
        **metadata.model_dump(),
        context=context_metadata,
        model_file=model_path.name,
        sha256=sha256,
        version=version_for(sha256),
    )
    _write_atomically(model_path, data)
    _write_atomically(metadata_path_for(model_path), manifest.model_dump_json(indent=2).encode() + b"\n")
    return manifest


def load_bundle(model_path: Path) -> ModelBundle:
    """Load and verify a model; raise ``ModelNotFoundError`` or ``ModelIntegrityError`` with the reason."""
    metadata_path = metadata_path_for(model_path)
    try:
        data = model_path.read_bytes()
    except FileNotFoundError:
        raise ModelNotFoundError(f"no model at {model_path}: train one with `python save_model.py`") from None
    except OSError as exc:
        raise ModelError(f"cannot read {model_path}: {exc.strerror or exc}") from None
    try:
        raw_manifest = metadata_path.read_bytes()
        _check_format(raw_manifest, metadata_path)
        manifest = ModelManifest.model_validate_json(raw_manifest)
    except FileNotFoundError:
        raise ModelIntegrityError(
            f"{metadata_path.name} is missing next to {model_path}: refusing to unpickle an unverified file"
        ) from None
    except OSError as exc:
        raise ModelError(f"cannot read {metadata_path}: {exc.strerror or exc}") from None
    except ValidationError as exc:
        raise ModelIntegrityError(f"{metadata_path} is not valid model metadata: {exc.errors()[0]['msg']}") from None

    actual = hashlib.sha256(data).hexdigest()
    if not hmac.compare_digest(actual, manifest.sha256):
        raise ModelIntegrityError(
            f"sha256 of {model_path} is {actual[:12]}..., {metadata_path.name} says {manifest.sha256[:12]}...: "
            "the file changed after training; refusing to unpickle it (retrain with `python save_model.py`)"
        )

    try:
        payload: Any = joblib.load(io.BytesIO(data))  # the exact bytes just verified
    except Exception as exc:  # unpickling can raise anything, e.g. after a scikit-learn upgrade
        raise ModelError(
            f"cannot unpickle {model_path} (trained with scikit-learn {manifest.sklearn_version}, "
            f"running {sklearn.__version__}): {exc!r}; retrain with `python save_model.py`"
        ) from exc
    if not isinstance(payload, dict) or not all(
        isinstance(payload.get(key), IsolationForest) for key in ("forest", "context_forest")
    ):
        raise ModelIntegrityError(f"{model_path} does not hold the point and context IsolationForests")
    try:
        metadata = ModelMetadata.model_validate(payload.get("metadata"))
    except ValidationError:
        raise ModelIntegrityError(f"{model_path} holds malformed metadata") from None
    if metadata != ModelMetadata.model_validate(manifest.model_dump(include=set(ModelMetadata.model_fields))):
        raise ModelIntegrityError(f"{metadata_path.name} disagrees with the metadata inside {model_path.name}")
    if payload.get("context_metadata") != manifest.context:
        raise ModelIntegrityError(f"{metadata_path.name} disagrees with the context metadata inside {model_path.name}")
    if metadata.features != list(POINT_FEATURES):
        raise ModelIntegrityError(
            f"model features are {metadata.features}, this service computes {list(POINT_FEATURES)}"
        )
    if metadata.sklearn_version != sklearn.__version__:
        log.warning(
            "model %s was trained with scikit-learn %s, running %s",
            version_for(actual),
            metadata.sklearn_version,
            sklearn.__version__,
        )
    forest = payload["forest"]
    context_forest = payload["context_forest"]
    try:
        bundle = ModelBundle(
            forest=forest,
            metadata=metadata,
            sha256=actual,
            scorer=CompiledForest(forest),
            context_metadata=manifest.context,
            context_model=ContextModel.from_metadata(context_forest, manifest.context),
        )
        # The context vector is the forest's features, then the service's history (surprise, its weight).
        width, _ = len(manifest.context["forest_features"]), bundle.gate_config
        if len(bundle.context_features) != width + len(HISTORY_FEATURES):
            raise ValueError(f"{len(bundle.context_features)} context features for a forest of {width}")
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelIntegrityError(f"{model_path} holds malformed context metadata ({exc!r})") from None
    if context_forest.n_features_in_ != width:
        raise ModelIntegrityError(f"the context forest takes {context_forest.n_features_in_} features, not {width}")
    return bundle


def _check_format(manifest_json: bytes, metadata_path: Path) -> None:
    """Refuse a bundle of another format with what to do, before reading the rest of it."""
    try:
        found = orjson.loads(manifest_json).get("format")
    except (orjson.JSONDecodeError, AttributeError):
        return  # the schema validation says what is wrong
    if found != FORMAT_VERSION:
        raise ModelIntegrityError(
            f"{metadata_path} describes a format-{found} model, this service needs format {FORMAT_VERSION} "
            "(point and context models in one file): retrain with `python save_model.py`"
        )


def _json_round_trip(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` as it reads back from JSON (tuples become lists...), so both copies compare equal on load."""
    result: dict[str, Any] = orjson.loads(orjson.dumps(data))
    return result


def _write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; the service may run as another user
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
