"""Live dashboard served by the ML service at ``/dashboard``.

Mount it with::

    from ml_service.dashboard import router as dashboard_router, shutdown_dashboard
    app.include_router(dashboard_router)      # and call shutdown_dashboard() when the app shuts down

The Kafka reader behind it starts with the first viewer and stops after the last one left
(see ``ml_service.dashboard.feed``); the rest of the service never pays for it.
"""

from ml_service.dashboard.feed import LiveFeed, get_feed, shutdown_dashboard
from ml_service.dashboard.routes import router
from ml_service.dashboard.settings import DashboardSettings
from ml_service.dashboard.window import LiveWindow

__all__ = ["DashboardSettings", "LiveFeed", "LiveWindow", "get_feed", "router", "shutdown_dashboard"]
