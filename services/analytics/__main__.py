"""`python -m services.analytics`: serve the analytics service."""

from __future__ import annotations

from services.analytics.app import create_app
from services.analytics.settings import AnalyticsSettings
from shared.serve import serve


def main() -> None:
    """Read settings, build the app, serve it."""
    settings = AnalyticsSettings()
    serve(
        create_app(settings),
        host=settings.analytics_host,
        port=settings.analytics_port,
        log_level=settings.log_level,
    )


if __name__ == "__main__":
    main()
