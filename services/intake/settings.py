"""The intake's settings (environment variables; see README, "Configuration")."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from shared.personal import EmailKeys
from shared.settings import Secret, ServiceSettings

SURVEYS_DIR = Path(__file__).with_name("surveys")


class IntakeSettings(ServiceSettings):
    """Everything the intake reads from its environment."""

    intake_host: str = "0.0.0.0"
    intake_port: int = 8000
    operator_token: Secret  # no default: the intake does not start without it
    # Key of the keyed hash that names a person in erasure events (`shared.personal`).
    email_key_secret: Secret
    surveys_dir: Path = SURVEYS_DIR
    # Kobo and Typeform give up after 30 s; answer 503 well before so they retry.
    publish_timeout_seconds: float = Field(default=8.0, gt=0)
    # A claim older than this was left by a replica that died mid-publish and may be taken over.
    claim_lease_seconds: float = Field(default=30.0, gt=0)
    # How far ahead of the intake's clock a `submitted_at` may lie (clocks of senders drift).
    submitted_at_tolerance_seconds: float = Field(default=300.0, ge=0, le=86_400)

    def email_keys(self) -> EmailKeys:
        """The keyed hash of addresses (`shared.personal`)."""
        return EmailKeys(self.email_key_secret.get_secret_value())
