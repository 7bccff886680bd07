"""services.intake.asyncapi: the AsyncAPI document of the topics, and the committed copy."""

from __future__ import annotations

from pathlib import Path

import yaml

from services.intake.asyncapi import specification
from shared import topics

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml"


def test_specification_every_topic_with_its_event_schema():
    document = yaml.safe_load(specification())

    assert document["asyncapi"] == "3.0.0"
    assert set(document["channels"]) == {
        topics.RESPONSES,
        topics.PILOTS,
        topics.REVIEWS,
        topics.ERASURES,
    }
    assert {operation["action"] for operation in document["operations"].values()} == {"send"}
    schemas = document["components"]["schemas"]
    assert "response_id" in schemas["SurveyResponse"]["required"]
    assert "pilot_id" in schemas["PilotAnnounced"]["required"]
    assert {"request_id", "email_key"} <= set(schemas["ErasureRequested"]["required"])
    assert "email" not in schemas["ErasureRequested"]["properties"]
    assert "Key: `response_id`" in document["channels"][topics.RESPONSES]["description"]
    assert "revision" in schemas["SurveyResponse"]["properties"]
    review = schemas["ResponseReview"]
    assert {"review_id", "survey_id", "response_id", "status", "order"} <= set(review["required"])
    reviews = document["channels"][topics.REVIEWS]["description"]
    assert "Key: `<survey_id>/<response_id>`" in reviews
    assert "highest `order`" in reviews


def test_committed_document_has_the_same_channels_and_schemas():
    # `make asyncapi` regenerates it; a topic or event added without doing so is caught here.
    committed = yaml.safe_load(COMMITTED.read_text(encoding="utf-8"))
    generated = yaml.safe_load(specification())

    assert committed["channels"] == generated["channels"]
    assert committed["operations"] == generated["operations"]
    assert committed["components"] == generated["components"]  # every event field, as generated


def test_specification_same_text_every_time():
    assert specification() == specification()
