"""The model currently served, swapped atomically on reload."""

import logging
import threading
from pathlib import Path

import numpy as np

from ml_service.errors import ModelError
from ml_service.model import ModelBundle, load_bundle

log = logging.getLogger(__name__)


class ModelStore:
    """Holds the loaded ``ModelBundle`` (or why there is none).

    Readers take ``store.bundle`` once per request and use that object throughout, so a reload in
    between never mixes two models in one answer. A failed reload keeps the model being served.
    """

    def __init__(self, model_path: Path) -> None:
        self.model_path = model_path
        self._bundle: ModelBundle | None = None
        self._error: str | None = "not loaded yet"
        self._reload_lock = threading.Lock()

    @property
    def bundle(self) -> ModelBundle | None:
        return self._bundle

    @property
    def error(self) -> str | None:
        """Why no model is served, or None when one is."""
        return self._error if self._bundle is None else None

    def load(self) -> ModelBundle:
        """Load (or reload) the model from disk; raise ``ModelError`` and keep the current one on failure."""
        with self._reload_lock:
            try:
                bundle = load_bundle(self.model_path)
            except ModelError as exc:
                self._error = str(exc)
                raise
            # Load the context forest's compiled walk (numba, ~0.5 s) now, not in the first request's time.
            bundle.predict_context(np.zeros((1, len(bundle.context_features))))
            previous = self._bundle
            self._bundle, self._error = bundle, None
        log.info(
            "serving model %s (threshold %.4f, trained %s on %d events; previous %s)",
            bundle.version,
            bundle.metadata.threshold,
            bundle.metadata.trained_at,
            bundle.metadata.training.rows,
            previous.version if previous else None,
        )
        return bundle
