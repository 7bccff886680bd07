"""The analytics service's settings (environment variables; see README, "Configuration")."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from shared.auth import JwtPolicy, check_jwks_url
from shared.personal import EmailKeys
from shared.settings import Secret, ServiceSettings


class AnalyticsSettings(ServiceSettings):
    """Everything analytics reads from its environment."""

    analytics_host: str = "0.0.0.0"
    analytics_port: int = 8001
    analytics_group_id: str = "analytics"
    # Every batch costs a few writes per aggregate document whatever its size: measured
    # (`bench.analytics`, 100,000 responses, within one hour), batches of 10,000 applied
    # 5,531-6,756 responses/s, batches of 5,000 5,452-5,543.
    analytics_batch_size: int = Field(default=10_000, gt=0, le=10_000)
    # A pause between applying a batch and committing its offsets: for fault tests only (0 in
    # service), so that a SIGKILL can be placed in that window on a fast machine.
    analytics_commit_delay_seconds: float = Field(default=0.0, ge=0, le=10)
    # No default: without it the service does not start (filtered views and partners need it);
    # refused when a placeholder or short (`shared.settings`).
    operator_token: Secret
    # Public breakdowns leave out values counted from fewer responses than this (1: none).
    min_cell_size: int = Field(default=5, ge=1)
    # Optional: bearer JWTs of the organisation's identity provider, checked against its keys.
    jwks_url: str | None = None
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    jwt_scope: str = Field(default="analytics:operator", min_length=1)
    # Key of the keyed hash of a focal point's address kept with each response, by which an
    # erasure request finds it (`shared.personal`); the same value in every service.
    email_key_secret: Secret
    # Free-text answers older than this are anonymised by a sweep every RETENTION_SWEEP_SECONDS.
    personal_data_retention_days: float = Field(default=365.0, gt=0)
    retention_sweep_seconds: float = Field(default=3600.0, gt=0)
    # A pause between the responses an erasure changes: for fault tests only (0 in service).
    erasure_step_delay_seconds: float = Field(default=0.0, ge=0, le=10)

    @field_validator("jwks_url")
    @classmethod
    def _jwks_url(cls, url: str | None) -> str | None:
        return check_jwks_url(url) if url else None

    @model_validator(mode="after")
    def _jwt_complete(self) -> AnalyticsSettings:
        if self.jwks_url and not (self.jwt_audience and self.jwt_issuer):
            raise ValueError("JWKS_URL needs JWT_AUDIENCE and JWT_ISSUER")
        return self

    def email_keys(self) -> EmailKeys:
        """The keyed hash of addresses (`shared.personal`)."""
        return EmailKeys(self.email_key_secret.get_secret_value())

    def jwt_policy(self) -> JwtPolicy | None:
        """What a bearer JWT must satisfy, when JWTs are accepted at all."""
        if not (self.jwks_url and self.jwt_audience and self.jwt_issuer):
            return None
        return JwtPolicy(self.jwks_url, self.jwt_audience, self.jwt_issuer, self.jwt_scope)
