"""The ML service's settings, read from the environment in this one place."""

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The service folder (``fastapi-ml-service/``), found from the package so the CWD does not matter.
SERVICE_DIR = Path(__file__).resolve().parent.parent
DEFAULT_MODEL_PATH = SERVICE_DIR / "model.joblib"


class MLSettings(BaseSettings):
    """How the ML service listens, where its model lives, and who may call it.

    Every field is read from the environment variable of the same name in upper case.
    """

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    ml_host: str = Field(default="127.0.0.1", description="Interface the HTTP server binds (python main.py).")
    ml_port: int = Field(
        default=8000, ge=1, le=65535, description="TCP port the HTTP server listens on (python main.py)."
    )
    ml_workers: int = Field(
        default=1, ge=1, le=64, description="Uvicorn worker processes when started with python main.py."
    )
    model_path: Path = Field(
        default=DEFAULT_MODEL_PATH,
        description="The joblib model file; its metadata is the .json file next to it. "
        "Default: model.joblib in the fastapi-ml-service folder.",
    )
    ml_api_key: SecretStr | None = Field(
        default=None, description="Key (header X-API-Key) that allows POST /model/reload; unset disables reloading."
    )
    ml_scoring_api_key: SecretStr | None = Field(
        default=None, description="If set, /predict and /predict/batch require this key in header X-API-Key."
    )
    predict_batch_max: int = Field(default=10_000, ge=1, description="Most events accepted in one POST /predict/batch.")
    max_body_bytes: int = Field(
        default=4 * 1024 * 1024, ge=1024, description="Largest request body accepted, in bytes; larger ones get 413."
    )
    ml_access_log: bool = Field(
        default=False,
        description="Log a line per request (uvicorn's access log, at INFO) when started with python main.py; "
        "off by default: at thousands of requests per second it is mostly noise, and costs CPU.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        default="INFO", description="Level of the service's logs."
    )

    @field_validator("ml_api_key", "ml_scoring_api_key", mode="before")
    @classmethod
    def _empty_means_unset(cls, value: object) -> object:
        # An empty key would let an empty header through: treat KEY= like an unset variable.
        return None if value == "" else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value
