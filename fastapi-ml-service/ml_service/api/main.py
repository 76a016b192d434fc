"""All routers of the API, assembled in one place."""

from fastapi import APIRouter

from ml_service.api.routes import health, metrics, model, predict, schema
from ml_service.dashboard import router as dashboard_router

api_router = APIRouter()
api_router.include_router(predict.router)
api_router.include_router(health.router)
api_router.include_router(model.router)
api_router.include_router(metrics.router)
api_router.include_router(schema.router)
api_router.include_router(dashboard_router)
