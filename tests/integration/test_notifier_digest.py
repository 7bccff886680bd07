"""Digest: pilots matching one focal point within the window go out as one email."""

from __future__ import annotations

from email import message_from_bytes, policy
from typing import Any

import pytest

from services.notifier.app import create_app
from services.notifier.settings import NotifierSettings
from tests.integration.notifier_support import focal_response, notifier_settings, pilot, records
from tests.support import (
    OPERATOR,
    OPERATOR_TOKEN,
    Mailbox,
    Stack,
    confirm_focal_points,
    eventually,
    produce,
    serving,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(stack: Stack, run_id: str) -> NotifierSettings:
    return notifier_settings(
        stack,
        run_id,
        operator_token=OPERATOR_TOKEN,
        digest_window_seconds=3,
    )


async def test_pilots_within_window_one_digest_each_delivery_recorded(
    stack: Stack, settings: NotifierSettings, run_id: str
) -> None:
    both = f"both-{run_id}@example.org"
    one = f"one-{run_id}@example.org"
    mailbox = Mailbox(stack.mail_api)
    await produce(
        stack.kafka,
        settings.topic_responses,
        records(
            focal_response(1, both, interests=["climate-resilience", "housing"]),
            focal_response(2, one, interests=["housing"]),
        ),
    )
    flood = pilot(f"flood-{run_id}", title=f"Flood {run_id}")
    homes = pilot(f"homes-{run_id}", title=f"Homes {run_id}", themes=["housing"], sdgs=[])
    async with serving(create_app(settings)) as client:

        async def deliveries(pilot_id: str) -> list[dict[str, Any]]:
            answer = await client.get(
                "/v1/deliveries", params={"pilot_id": pilot_id}, headers=OPERATOR
            )
            return list(answer.json()["deliveries"])

        await confirm_focal_points(client, mailbox, both, one)
        await produce(stack.kafka, settings.topic_pilots, records(flood, homes))
        sent = await eventually(
            lambda: deliveries(homes.pilot_id),
            lambda ds: [d["state"] for d in ds] == ["sent", "sent"],
            within=60,
        )
        [flood_delivery] = await deliveries(flood.pilot_id)
        digest = await eventually(lambda: mailbox.messages_to(both), lambda m: len(m) >= 1)
        single = await eventually(lambda: mailbox.messages_to(one), lambda m: len(m) >= 1)

    keys = settings.email_keys()
    by_person = {
        address: d for d in sent for address in (one, both) if d["focal_point"] == keys.key(address)
    }
    assert flood_delivery["state"] == "sent"
    assert flood_delivery["message_id"] == by_person[both]["message_id"]
    assert by_person[one]["message_id"] != by_person[both]["message_id"]
    assert len(digest) == 1
    assert digest[0]["Subject"] == "2 new pilots for your city"
    text = message_from_bytes(await mailbox.raw(digest[0]["ID"]), policy=policy.default)
    body = text.get_body(("plain",)).get_content()
    assert f"Flood {run_id}" in body and f"Homes {run_id}" in body
    assert len(single) == 1
    assert single[0]["Subject"] == f"New pilot for your city: Homes {run_id}"
