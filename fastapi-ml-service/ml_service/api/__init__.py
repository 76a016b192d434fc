"""The HTTP layer: routers in ``routes/``, shared dependencies in ``deps``."""
