"""The ML service: ``uvicorn main:app`` (from this folder) or ``python main.py`` (ML_HOST, ML_PORT, ML_WORKERS)."""

from ml_service.app import configure_logging, create_app, run
from ml_service.settings import MLSettings

settings = MLSettings()
configure_logging(settings)
app = create_app(settings)

if __name__ == "__main__":
    run(settings)
