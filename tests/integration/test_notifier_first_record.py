"""A focal point's first record, built in code and inserted, is the very document the guarded
upsert makes on the real MongoDB-wire server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.notifier.records import first_record
from services.notifier.registry import FOCAL_POINTS, Registry, first_document
from shared import mongo
from shared.events import SurveyResponse
from shared.mongo import Document
from tests.integration.notifier_support import notifier_settings
from tests.support import Stack, canonical_response

pytestmark = pytest.mark.integration
NOW = datetime(2026, 3, 4, 12, 0, 0, 123456, tzinfo=UTC)


def response(email: str, *, consent: bool = True, **fields: Any) -> SurveyResponse:
    body = canonical_response(
        "generic:7",
        submitted_at="2024-05-02T10:31:00.250Z",
        respondent={"type": "local_government", "country": "VN", "city": "Huế"},
        development_priorities=["sdg-6", "sdg-13"],
        collaboration_interests=["climate-resilience", "housing"],
        focal_point={"name": "Lê Văn Cường", "email": email, "language": "fr", "consent": consent},
    )
    return SurveyResponse.model_validate(
        {**body, "source": "generic", "received_at": NOW, **fields}
    )


@pytest.fixture
async def db(stack: Stack, run_id: str) -> AsyncIterator[AsyncDatabase[Document]]:
    client = mongo.new_client(stack.mongodb_url)
    yield mongo.database(client, f"test_{run_id}")
    await client.close()


@pytest.mark.parametrize(
    ("consent", "withheld", "fields"),
    [
        (True, False, {}),
        (False, False, {}),
        (True, True, {"revision": 2}),
        (False, True, {"revision": 3}),
    ],
    ids=["consent", "withdrawal", "withheld-revision", "withheld-withdrawal"],
)
async def test_register_first_record_built_equals_guarded_upsert(
    db: AsyncDatabase[Document],
    stack: Stack,
    run_id: str,
    consent: bool,
    withheld: bool,
    fields: dict[str, Any],
) -> None:
    registry = Registry(db, notifier_settings(stack, run_id).email_keys())
    given = response(f"cuong-{run_id}@example.org", consent=consent, **fields)
    key = registry.key(str(given.focal_point.email) if given.focal_point else "")

    upserted = await registry._guarded(given, key, withheld, NOW)
    stored = await db[FOCAL_POINTS].find_one({"_id": key})
    built = first_record(key, given, NOW if withheld else None)

    assert stored == first_document(built)
    assert upserted == built
    assert (built.revision, built.unsubscribed) == (1, False)
    assert (built.withheld_at is not None) == withheld
