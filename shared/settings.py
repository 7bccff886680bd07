"""One settings pattern for every service: environment variables named as in DESIGN.md."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared import topics


class ServiceSettings(BaseSettings):
    """What every service reads from its environment. Each service subclasses it once."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    kafka_bootstrap_servers: str = "localhost:9092"
    mongodb_url: str = "mongodb://localhost:27017"
    mongodb_database: str = "cities_survey"
    topic_responses: str = topics.RESPONSES
    topic_pilots: str = topics.PILOTS
    # For the topics created by `python -m shared.kafka_topics` or by a service that finds one
    # missing; existing topics keep theirs. One broker locally, 3 (or more) in production.
    kafka_topic_partitions: int = Field(default=topics.PARTITIONS, ge=1)
    kafka_topic_replication_factor: int = Field(default=1, ge=1)
    log_level: str = "INFO"
