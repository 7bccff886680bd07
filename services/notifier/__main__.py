"""`python -m services.notifier`: serve the notifier service."""

from __future__ import annotations

from services.notifier.app import create_app
from services.notifier.settings import NotifierSettings
from shared.serve import serve


def main() -> None:
    """Read settings, build the app, serve it."""
    settings = NotifierSettings()
    serve(
        create_app(settings),
        host=settings.notifier_host,
        port=settings.notifier_port,
        log_level=settings.log_level,
    )


if __name__ == "__main__":
    main()
