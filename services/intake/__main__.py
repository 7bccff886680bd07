"""`python -m services.intake`: serve the intake service."""

from __future__ import annotations

from services.intake.app import create_app
from services.intake.settings import IntakeSettings
from shared.serve import serve


def main() -> None:
    """Read settings, build the app, serve it."""
    settings = IntakeSettings()
    serve(
        create_app(settings),
        host=settings.intake_host,
        port=settings.intake_port,
        log_level=settings.log_level,
    )


if __name__ == "__main__":
    main()
