"""The notifier and reviews: a focal point is not mailed because of a response that is rejected
or retracted (on arrival or later), an approval brings them back, and a later revision of a
response replaces an earlier one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from services.notifier.deliveries import Deliveries
from services.notifier.notifier import Notifier
from services.notifier.registry import Registry
from shared import mongo
from shared.events import ResponseReview, SurveyResponse
from tests.integration.notifier_support import notifier_settings, pilot
from tests.integration.test_notifier_registry import T0, response
from tests.support import Stack

pytestmark = pytest.mark.integration


@dataclass
class Parts:
    registry: Registry
    deliveries: Deliveries
    notifier: Notifier


@pytest.fixture
async def parts(stack: Stack, run_id: str) -> AsyncIterator[Parts]:
    client = mongo.new_client(stack.mongodb_url)
    db = mongo.database(client, f"test_{run_id}")
    # About reviews, not double opt-in (tested in test_notifier_consent.py): addresses count as
    # confirmed here.
    settings = notifier_settings(stack, run_id, smtp_port=9, double_opt_in=False)
    registry = Registry(db, settings.email_keys(), require_confirmation=False)
    await registry.ensure_indexes()
    deliveries = Deliveries(db, timedelta(seconds=60))
    yield Parts(registry, deliveries, Notifier(settings, registry, deliveries))
    await client.close()


def review(of: SurveyResponse, status: str, order: int, review_id: str) -> ResponseReview:
    return ResponseReview(
        review_id=review_id,
        survey_id=of.survey_id,
        response_id=of.response_id,
        status=status,  # type: ignore[arg-type]
        reviewed_at=datetime.now(UTC),
        order=order,
    )


async def test_on_response_rejected_on_arrival_withheld_not_matched(
    parts: Parts, run_id: str
) -> None:
    rejected = f"rejected-{run_id}@example.org"
    pending = f"pending-{run_id}@example.org"
    await parts.notifier.on_response(
        response(1, rejected, at=T0).model_copy(update={"review": "rejected"})
    )
    await parts.notifier.on_response(response(2, pending, at=T0))

    created = await parts.notifier.on_pilot(pilot(f"pilot-{run_id}"))

    assert created == 1  # the pending response's focal point only
    held = await parts.registry.get(parts.registry.key(rejected))
    assert held is not None and held.withheld and held.email == rejected


async def test_on_review_rejection_withholds_approval_delivers_open_pilots(
    parts: Parts, run_id: str
) -> None:
    email = f"reviewed-{run_id}@example.org"
    submitted = response(1, email, at=T0)
    await parts.notifier.on_response(submitted)
    key = parts.registry.key(email)

    assert await parts.notifier.on_review(review(submitted, "rejected", 10, "r1")) == 0
    created_while_rejected = await parts.notifier.on_pilot(pilot(f"first-{run_id}"))
    # An older review arriving late changes nothing: the rejection is the latest.
    assert await parts.notifier.on_review(review(submitted, "approved", 5, "r0")) == 0
    withheld = await parts.registry.get(key)
    released = await parts.notifier.on_review(review(submitted, "approved", 20, "r2"))
    again = await parts.notifier.on_review(review(submitted, "approved", 20, "r2"))
    retracted = await parts.notifier.on_review(review(submitted, "retracted", 30, "r3"))
    created_while_retracted = await parts.notifier.on_pilot(pilot(f"second-{run_id}"))

    assert created_while_rejected == 0 and withheld is not None and withheld.withheld
    assert released == 1  # the open pilot announced while they were withheld
    assert [d.email_key for d in await parts.deliveries.for_pilot(f"first-{run_id}")] == [key]
    assert again == 0  # a redelivered review: the delivery exists already
    assert retracted == 0 and created_while_retracted == 0
    record = await parts.registry.get(key)
    assert record is not None and record.withheld


async def test_register_later_revision_same_submitted_at_replaces_earlier(
    parts: Parts, run_id: str
) -> None:
    email = f"revised-{run_id}@example.org"
    first = response(1, email, at=T0, interests=("housing",))
    second = response(1, email, at=T0, interests=("climate-resilience",)).model_copy(
        update={"revision": 2}
    )

    await parts.registry.register(first)
    await parts.registry.register(second)
    await parts.registry.register(first)  # redelivered late: an older revision
    record = await parts.registry.get(parts.registry.key(email))

    assert record is not None
    assert (record.response_revision, record.survey_codes) == (2, ("climate-resilience",))
