"""Poison records on `privacy.erasures.v1` go to its DLQ, and the erasure behind them is done."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from services.notifier.app import create_app
from shared.events import ErasureRequested
from shared.topics import dlq
from tests.integration.notifier_support import focal_response, notifier_settings, records
from tests.support import Stack, eventually, produce, read_topic, serving

pytestmark = pytest.mark.integration


async def test_poison_erasure_events_to_dlq_and_next_erasure_done(
    stack: Stack, run_id: str
) -> None:
    settings = notifier_settings(stack, run_id)
    person = f"poison.erasure-{run_id}@example.org"
    keys = settings.email_keys()
    erasure = ErasureRequested(
        request_id=f"req-{run_id}", email_key=keys.key(person), requested_at=datetime.now(UTC)
    )
    # An event that names the address instead of its keyed hash is refused, not acted on.
    with_address = {**json.loads(erasure.model_dump_json()), "email_key": person}
    poison = [b"not json at all", json.dumps(with_address).encode()]
    await produce(
        stack.kafka,
        settings.topic_responses,
        records(focal_response(1, person, interests=["climate-resilience"])),
    )
    app = create_app(settings)
    registry = app.state.notifier.registry
    async with serving(app):
        await eventually(lambda: registry.get(keys.key(person)), lambda r: r is not None, within=60)
        # One key: one partition, the poison first.
        key = erasure.request_id.encode()
        await produce(
            stack.kafka,
            settings.topic_erasures,
            [(key, value) for value in poison] + [(key, erasure.model_dump_json().encode())],
        )
        erased = await eventually(
            lambda: registry.get(keys.key(person)),
            lambda r: r is not None and r.erasure_id == erasure.request_id,
            within=60,
        )
    parked = await read_topic(stack.kafka, dlq(settings.topic_erasures), idle_seconds=2)

    assert sorted(r.value for r in parked) == sorted(poison)
    assert all(
        dict(r.headers)["dlq-group"] == f"{settings.notifier_group_id}.erasures".encode()
        for r in parked
    )
    assert erased.email is None and erased.consent is False
