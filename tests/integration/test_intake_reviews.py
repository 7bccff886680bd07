"""Reviews and retractions at the intake, against the real broker: what the operator routes
and the bulk CSV command answer, and the events that reach `survey.reviews.v1`."""

from __future__ import annotations

import pytest
from rich.console import Console

from services.intake.__main__ import publish_reviews
from services.intake.app import create_app
from services.intake.reviews import ReviewClock, reviews_from_csv
from services.intake.settings import IntakeSettings
from shared.events import ResponseReview
from tests.support import OPERATOR, OPERATOR_TOKEN, Stack, read_topic, serving, settings_for

pytestmark = pytest.mark.integration

SURVEY = "cities-2024-priorities"
RESPONSE = "generic:resp-1"


@pytest.fixture
def settings(stack: Stack, run_id: str) -> IntakeSettings:
    return settings_for(IntakeSettings, stack.environment(run_id), operator_token=OPERATOR_TOKEN)


async def reviews(stack: Stack, settings: IntakeSettings) -> list[tuple[bytes, ResponseReview]]:
    records = await read_topic(stack.kafka, settings.topic_reviews)
    return [(record.key, ResponseReview.model_validate_json(record.value)) for record in records]


async def test_review_response_published_keyed_by_identity_latest_ordered_last(
    stack: Stack, settings: IntakeSettings
) -> None:
    url = f"/v1/responses/{SURVEY}/{RESPONSE}"
    async with serving(create_app(settings)) as client:
        rejected = await client.post(
            f"{url}/review", json={"status": "rejected", "note": "test entry"}, headers=OPERATOR
        )
        retracted = await client.delete(url, headers=OPERATOR)
        approved = await client.post(f"{url}/review", json={"status": "approved"}, headers=OPERATOR)

    assert [answer.status_code for answer in (rejected, retracted, approved)] == [202] * 3
    assert rejected.json()["status"] == "rejected"
    published = await reviews(stack, settings)
    assert [key for key, _ in published] == [f"{SURVEY}/{RESPONSE}".encode()] * 3
    assert [(review.status, review.note) for _, review in published] == [
        ("rejected", "test entry"),
        ("retracted", ""),
        ("approved", ""),
    ]
    orders = [review.order for _, review in published]
    assert orders == sorted(orders) and len(set(orders)) == 3
    assert published[0][1].review_id == rejected.json()["review_id"]


async def test_review_response_refused_without_token_or_with_bad_input(
    stack: Stack, settings: IntakeSettings
) -> None:
    url = f"/v1/responses/{SURVEY}/{RESPONSE}"
    async with serving(create_app(settings)) as client:
        anonymous = await client.post(f"{url}/review", json={"status": "approved"})
        anonymous_delete = await client.delete(url)
        bad_status = await client.post(f"{url}/review", json={"status": "ok"}, headers=OPERATOR)
        long_note = await client.post(
            f"{url}/review", json={"status": "approved", "note": "x" * 2001}, headers=OPERATOR
        )
        unknown = await client.post(
            f"/v1/responses/no-such-survey/{RESPONSE}/review",
            json={"status": "approved"},
            headers=OPERATOR,
        )
        bad_id = await client.delete(f"/v1/responses/{SURVEY}/a%20b", headers=OPERATOR)

    assert (anonymous.status_code, anonymous_delete.status_code) == (401, 401)
    assert (bad_status.status_code, long_note.status_code) == (422, 422)
    assert unknown.status_code == 404
    assert bad_id.status_code == 422
    assert bad_id.json()["errors"][0]["field"] == "response_id"
    assert await reviews(stack, settings) == []


async def test_publish_reviews_from_csv_publishes_valid_lines_reports_others(
    stack: Stack, settings: IntakeSettings
) -> None:
    text = (
        "survey_id,response_id,status,note\n"
        f"{SURVEY},generic:a,approved,\n"
        f"{SURVEY},generic:b,rejected,spam\n"
        f"{SURVEY},generic:c,maybe,\n"
        f"no-such-survey,generic:d,approved,\n"
        f"{SURVEY},generic:e,retracted,duplicate of a\n"
    )
    console = Console(record=True, width=200)

    code = await publish_reviews(settings, reviews_from_csv(text, ReviewClock()), console)

    assert code == 1  # two lines refused
    output = console.export_text()
    assert "line 4: refused" in output and "line 5: refused" in output
    assert "reviews published: 3  refused: 2" in output
    published = await reviews(stack, settings)
    # Keyed by response: in several partitions, so read in no particular order.
    assert sorted((review.response_id, review.status) for _, review in published) == [
        ("generic:a", "approved"),
        ("generic:b", "rejected"),
        ("generic:e", "retracted"),
    ]
