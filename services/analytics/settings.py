"""The analytics service's settings (environment variables; see README, "Configuration")."""

from __future__ import annotations

from pydantic import Field

from shared.settings import ServiceSettings


class AnalyticsSettings(ServiceSettings):
    """Everything analytics reads from its environment."""

    analytics_host: str = "0.0.0.0"
    analytics_port: int = 8001
    analytics_group_id: str = "analytics"
    analytics_batch_size: int = Field(default=2000, gt=0, le=10_000)
