"""The notifier and reviews: a response rejected on arrival registers no focal point, so no
pilot is mailed because of it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.notifier.deliveries import Deliveries
from services.notifier.mailer import Mailer
from services.notifier.notifier import Notifier
from services.notifier.registry import Registry
from shared import mongo
from tests.integration.notifier_support import notifier_settings, pilot
from tests.integration.test_notifier_registry import T0, response
from tests.support import Stack

pytestmark = pytest.mark.integration


async def test_on_response_rejected_on_arrival_registers_nobody(stack: Stack, run_id: str) -> None:
    client = mongo.new_client(stack.mongodb_url)
    db = mongo.database(client, f"test_{run_id}")
    # About reviews, not double opt-in (tested in test_notifier_consent.py): addresses count as
    # confirmed here.
    settings = notifier_settings(stack, run_id, smtp_port=9, double_opt_in=False)
    registry = Registry(db, settings.email_keys(), require_confirmation=False)
    await registry.ensure_indexes()
    deliveries = Deliveries(db, timedelta(seconds=60))
    notifier = Notifier(settings, registry, deliveries, Mailer("127.0.0.1", 9))
    rejected = f"rejected-{run_id}@example.org"
    pending = f"pending-{run_id}@example.org"
    try:
        await notifier.on_response(
            response(1, rejected, at=T0).model_copy(update={"review": "rejected"})
        )
        await notifier.on_response(response(2, pending, at=T0))
        announced = pilot(f"pilot-{run_id}")
        created = await notifier.on_pilot(announced)
        registered = (
            await registry.get(registry.key(rejected)),
            await registry.get(registry.key(pending)),
        )
    finally:
        await client.drop_database(f"test_{run_id}")
        await client.close()

    assert created == 1  # the pending response's focal point only
    assert registered[0] is None and registered[1] is not None
