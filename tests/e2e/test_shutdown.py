"""SIGTERM under load: the intake finishes what it accepted and loses none of it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tests.support import (
    WEBHOOK_SECRET,
    Stack,
    assert_clean_exit,
    canonical_response,
    dumps,
    read_topic,
    signed_headers,
    start_service,
)

pytestmark = pytest.mark.e2e
WEBHOOK = "/v1/webhooks/generic/cities-2024-priorities"
SENDERS = 8


async def test_sigterm_under_load_loses_no_accepted_response(
    stack: Stack, run_id: str, tmp_path: Path
) -> None:
    environment = {
        **stack.environment(run_id),
        "WEBHOOK_SECRET_CITIES_2024_PRIORITIES_GENERIC": WEBHOOK_SECRET,
    }
    intake = start_service("intake", environment, tmp_path)
    intake.wait_ready()
    accepted: list[str] = []
    refused = 0
    stop_sending = asyncio.Event()
    enough_accepted = asyncio.Event()

    async def sender(number: int, client: httpx.AsyncClient) -> None:
        nonlocal refused
        sequence = 0
        while not stop_sending.is_set():
            response_id = f"shutdown-{number}-{sequence}"
            sequence += 1
            body = dumps(canonical_response(response_id))
            try:
                answer = await client.post(
                    f"{intake.url}{WEBHOOK}",
                    content=body,
                    headers=signed_headers(body, response_id),
                )
            except httpx.TransportError:
                refused += 1  # the server had stopped listening: the platform would retry
                await asyncio.sleep(0.05)
                continue
            if answer.status_code == 202:
                accepted.append(f"generic:{response_id}")
                if len(accepted) >= 100:
                    enough_accepted.set()

    async with httpx.AsyncClient(timeout=30) as client:
        senders = [asyncio.create_task(sender(n, client)) for n in range(SENDERS)]
        await enough_accepted.wait()
        code = await asyncio.to_thread(intake.terminate)
        stop_sending.set()
        await asyncio.gather(*senders)

    assert_clean_exit(intake, code)
    published = {
        record.key.decode()
        for record in await read_topic(stack.kafka, environment["TOPIC_RESPONSES"])
    }
    assert set(accepted) <= published, sorted(set(accepted) - published)[:10]
    assert len(accepted) >= 100
