"""The whole pipeline as operators run it: three service processes on the real stack."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support import (
    WEBHOOK_SECRET,
    Mailbox,
    Stack,
    announce_until_sent,
    assert_clean_exit,
    canonical_response,
    confirm_focal_points,
    dumps,
    eventually,
    flood_pilot,
    signed_headers,
    start_service,
)

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Pipeline:
    intake: str
    analytics: str
    notifier: str


@pytest.fixture
def pipeline(stack: Stack, run_id: str, tmp_path: Path) -> Iterator[Pipeline]:
    environment = {
        **stack.environment(run_id),
        "WEBHOOK_SECRET_CITIES_2024_PRIORITIES_GENERIC": WEBHOOK_SECRET,
    }
    services = [
        start_service(name, environment, tmp_path) for name in ("intake", "analytics", "notifier")
    ]
    try:
        for service in services:
            service.wait_ready()
        yield Pipeline(*(service.url for service in services))
    finally:
        for service in services:
            assert_clean_exit(service, service.terminate())


async def test_webhook_to_email_end_to_end(pipeline: Pipeline, stack: Stack, run_id: str) -> None:
    matching = f"e2e-match-{run_id}@example.org"
    unmatched = f"e2e-other-{run_id}@example.org"
    webhook = f"{pipeline.intake}/v1/webhooks/generic/cities-2024-priorities"
    people = [
        ("r1", matching, ["climate-resilience", "knowledge-exchange"]),
        ("r2", unmatched, ["housing"]),
    ]
    async with httpx.AsyncClient(timeout=15) as client:

        async def total() -> int:
            answer = await client.get(
                f"{pipeline.analytics}/v1/surveys/cities-2024-priorities/summary"
            )
            return int(answer.json()["total"])

        before = await total()
        for response_id, email, interests in people:
            body = dumps(
                canonical_response(
                    response_id,
                    collaboration_interests=interests,
                    focal_point={"name": "Focal Point", "email": email, "consent": True},
                )
            )
            answer = await client.post(
                webhook, content=body, headers=signed_headers(body, response_id)
            )
            assert answer.status_code == 202, answer.text

        assert await eventually(total, lambda n: n == before + 2, within=60) == before + 2

        mailbox = Mailbox(stack.mail_api)
        await confirm_focal_points(client, mailbox, matching, unmatched, notifier=pipeline.notifier)
        pilot = flood_pilot(f"pilot-{run_id}", "https://example.org/pilots/e2e")
        await announce_until_sent(client, pipeline.intake, pipeline.notifier, pilot, sent=1)

    inbox = await eventually(lambda: mailbox.messages_to(matching), lambda m: len(m) >= 1)
    assert len(inbox) == 1
    assert await mailbox.messages_to(unmatched) == []
