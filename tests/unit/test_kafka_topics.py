"""Topic creation settings: partitions and replication factor from the environment."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from aiokafka.errors import InvalidReplicationFactorError
from pydantic import ValidationError

from shared.kafka import _raise_topic_errors, new_topics, personal_retention_ms
from shared.settings import ServiceSettings


def test_read_topic_defaults_for_one_local_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_TOPIC_PARTITIONS", raising=False)
    monkeypatch.delenv("KAFKA_TOPIC_REPLICATION_FACTOR", raising=False)
    settings = ServiceSettings()
    assert (settings.kafka_topic_partitions, settings.kafka_topic_replication_factor) == (6, 1)


def test_read_topic_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_TOPIC_PARTITIONS", "12")
    monkeypatch.setenv("KAFKA_TOPIC_REPLICATION_FACTOR", "3")
    settings = ServiceSettings()
    assert (settings.kafka_topic_partitions, settings.kafka_topic_replication_factor) == (12, 3)


@pytest.mark.parametrize("name", ["KAFKA_TOPIC_PARTITIONS", "KAFKA_TOPIC_REPLICATION_FACTOR"])
def test_refuse_topic_setting_below_one(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(name, "0")
    with pytest.raises(ValidationError, match=name.lower()):
        ServiceSettings()


def test_specify_replicated_topics_with_min_insync_replicas() -> None:
    (topic,) = new_topics(["survey.responses.v1"], 6, 3)
    assert (topic.name, topic.num_partitions, topic.replication_factor) == (
        "survey.responses.v1",
        6,
        3,
    )
    assert topic.topic_configs == {"min.insync.replicas": "2"}


def test_specify_unreplicated_topics_with_the_broker_default() -> None:
    topics = new_topics(["a", "a.dlq"], 2, 1)
    assert [(t.name, t.num_partitions, t.replication_factor) for t in topics] == [
        ("a", 2, 1),
        ("a.dlq", 2, 1),
    ]
    assert all(t.topic_configs == {} for t in topics)


def test_raise_a_refused_topic_but_not_one_that_exists() -> None:
    exists = SimpleNamespace(topic_errors=[("a", 0, None), ("b", 36, "Topic 'b' already exists.")])
    _raise_topic_errors(exists)
    refused = SimpleNamespace(topic_errors=[("c", 38, "only 1 broker(s) are registered")])
    with pytest.raises(InvalidReplicationFactorError, match="cannot create topic c"):
        _raise_topic_errors(refused)


def test_specify_responses_topics_with_personal_data_retention(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KAFKA_RESPONSES_RETENTION_DAYS", "2")
    retention = personal_retention_ms(ServiceSettings())
    topics = new_topics(
        ["survey.responses.v1", "survey.responses.v1.dlq", "other"], 6, 1, retention
    )

    assert retention == dict.fromkeys(
        ["survey.responses.v1", "survey.responses.v1.dlq"], 172_800_000
    )
    assert [t.topic_configs for t in topics] == [
        {"retention.ms": "172800000"},
        {"retention.ms": "172800000"},
        {},
    ]
