"""The dashboard labels a code newer than the service's taxonomy as unknown, counted under it."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from playwright.async_api import async_playwright

from shared import mongo
from tests.e2e.test_dashboard import CHROMIUM, FLAGS
from tests.support import (
    OPERATOR_TOKEN,
    ServiceProcess,
    Stack,
    canonical_response,
    eventually,
    produce,
    start_service,
)

pytestmark = pytest.mark.e2e

NEW_THEME = "ocean-economy"


@pytest.fixture
async def analytics(stack: Stack, run_id: str, tmp_path: Path) -> AsyncIterator[ServiceProcess]:
    environment = stack.environment(run_id)
    service = start_service("analytics", environment, tmp_path)
    try:
        service.wait_ready()
        yield service
    finally:
        service.terminate()
        admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka)
        await admin.start()
        try:
            mine = [t for t in await admin.list_topics() if t.startswith(f"test-{run_id}.")]
            await admin.delete_topics(mine)
        finally:
            await admin.close()
        client = mongo.new_client(stack.mongodb_url)
        await client.drop_database(environment["MONGODB_DATABASE"])
        await client.close()


async def test_dashboard_labels_unknown_code_and_counts_it(
    analytics: ServiceProcess, stack: Stack, run_id: str
) -> None:
    assert shutil.which(CHROMIUM), f"{CHROMIUM} missing: run `make browser`"
    body = {
        **canonical_response(f"generic:{run_id}", capacity_needs=[NEW_THEME, "housing"]),
        "source": "generic",
        "received_at": "2024-05-02T10:31:02Z",
    }
    topic = f"test-{run_id}.survey.responses.v1"
    await produce(stack.kafka, topic, [(body["response_id"].encode(), json.dumps(body).encode())])
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = await browser.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(str(error)))
        await page.goto(analytics.url + "/")
        # One response: a cell the public numbers hide (MIN_CELL_SIZE), so the operator looks.
        await page.fill("#token", OPERATOR_TOKEN)
        await page.click("#sign-in")
        bar = page.locator(f'#capacity_needs .bar[data-key="{NEW_THEME}"]')
        await eventually(bar.count, lambda n: n == 1, within=60)
        label = await bar.locator(".label").inner_text()
        count = await bar.locator(".count").inner_text()
        known = await page.locator('#capacity_needs .bar[data-key="housing"] .label').inner_text()
        await browser.close()

    assert label == f"unknown: {NEW_THEME}"
    assert count == "1"
    assert known == "Affordable housing and informal settlements"
    assert problems == []
