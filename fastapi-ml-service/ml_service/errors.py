"""Exceptions of the ML service.

::

    MLServiceError
    ├── ModelError               the model on disk cannot be served: a condition, /ready says why (503)
    │   ├── ModelNotFoundError   no model file yet: train one with ``python save_model.py``
    │   └── ModelIntegrityError  the file does not match its metadata (sha256, format): never unpickled
    └── TrainingDataError        too few usable events to train a model on

Bad requests are not exceptions of this tree: they are answered 4xx by the API layer. Anything else
that escapes is a bug and surfaces as a logged 500.
"""


class MLServiceError(Exception):
    """Root of the exceptions raised by ``ml_service``."""


class ModelError(MLServiceError):
    """The model could not be loaded; the message says why and what to do."""


class ModelNotFoundError(ModelError):
    """The model file (or its directory) does not exist."""


class ModelIntegrityError(ModelError):
    """The model file is missing its metadata, differs from the sha256 recorded there, or is malformed."""


class TrainingDataError(MLServiceError):
    """The training source yielded too few usable events."""
