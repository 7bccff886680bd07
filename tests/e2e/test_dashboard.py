"""The dashboard in a real headless browser (Debian chromium): it loads without console errors,
shows the API's numbers, follows the filters and refreshes as responses arrive."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, async_playwright

from shared.events import SurveyResponse
from tests.support import (
    ServiceProcess,
    Stack,
    canonical_response,
    eventually,
    produce,
    start_service,
)

pytestmark = pytest.mark.e2e

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
CITIES = [("VN", "Đà Nẵng"), ("KE", "Kisumu"), ("LK", "Colombo"), ("ID", "Surabaya")]
TYPES = ["local_government", "cso", "national_government", "academia"]
NEEDS = ["urban-planning", "housing", "water-sanitation", "climate-resilience", "smart-cities"]


def records(first: int, count: int) -> list[tuple[bytes, bytes]]:
    made = []
    for n in range(first, first + count):
        country, city = CITIES[n % len(CITIES)]
        body = canonical_response(
            f"generic:dash{n}",
            respondent={"type": TYPES[n % 3], "country": country, "city": city},
            capacity_needs=NEEDS[: 1 + n % len(NEEDS)],
            focal_point={"name": "Private Person", "email": "p@example.org", "consent": n % 2 == 0},
        )
        event = SurveyResponse.model_validate(
            {**body, "source": "generic", "received_at": datetime.now(UTC)}
        )
        made.append((event.response_id.encode(), event.model_dump_json().encode()))
    return made


@pytest.fixture
async def analytics(stack: Stack, run_id: str, tmp_path: Path) -> AsyncIterator[ServiceProcess]:
    environment = stack.environment(run_id)
    await produce(stack.kafka, environment["TOPIC_RESPONSES"], records(0, 40))
    service = start_service("analytics", environment, tmp_path)
    try:
        service.wait_ready()
        yield service
    finally:
        service.terminate()


async def api(service: ServiceProcess, path: str, **params: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=service.url, timeout=10) as client:
        answer = await client.get(path, params=params)
        answer.raise_for_status()
        body: dict[str, Any] = answer.json()
        return body


async def shown_bars(page: Page, field: str) -> dict[str, int]:
    rows = await page.locator(f"#{field} .bar").all()
    return {
        str(await row.get_attribute("data-key")): int(
            (await row.locator(".count").inner_text()).replace(",", "")
        )
        for row in rows
    }


async def shown_total(page: Page) -> str:
    return await page.locator("#total").inner_text()


async def assert_page_matches(page: Page, summary: dict[str, Any], ranking: dict[str, Any]) -> None:
    await eventually(lambda: shown_total(page), lambda text: text == f"{summary['total']:,}")
    for field in ("development_priorities", "capacity_needs", "by_respondent_type", "by_country"):
        assert await shown_bars(page, field) == dict(list(summary[field].items())[:12]), field
    cities = {f"{c['country']}|{c['city']}": c["count"] for c in summary["by_city"][:12]}
    assert await shown_bars(page, "by_city") == cities
    expected = [(f"{p['country']}|{p['city']}", str(p["score"])) for p in ranking["partners"]]

    async def shown_partners() -> list[tuple[str | None, str]]:
        rows = await page.locator("#partners tr").all()
        return [
            (await row.get_attribute("data-city"), await row.locator("td.score").inner_text())
            for row in rows
        ]

    # A second filter changed at once refreshes the page twice; the total may match after the
    # first refresh already, the partners only after the second.
    await eventually(shown_partners, lambda shown: shown == expected)


async def test_dashboard_shows_the_api_numbers(
    analytics: ServiceProcess, stack: Stack, run_id: str, tmp_path: Path
) -> None:
    assert shutil.which(CHROMIUM), f"{CHROMIUM} missing: run `make browser`"

    async def total() -> int:
        return int((await api(analytics, "/v1/overview"))["total"])

    await eventually(total, lambda n: n == 40, within=60)
    problems: list[str] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = await browser.new_page(viewport={"width": 1400, "height": 1800})
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.on("requestfailed", lambda request: problems.append(f"failed: {request.url}"))
        requested: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        await page.goto(analytics.url + "/")

        await assert_page_matches(
            page,
            await api(analytics, "/v1/overview"),
            await api(analytics, "/v1/partners", limit=15),
        )
        await page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)

        await page.select_option("#country", "KE")
        await page.select_option("#theme", "housing")
        await assert_page_matches(
            page,
            await api(analytics, "/v1/overview", country="KE"),
            await api(analytics, "/v1/partners", country="KE", theme="housing", limit=15),
        )
        await page.select_option("#country", "")
        await page.select_option("#theme", "")

        await produce(stack.kafka, f"test-{run_id}.survey.responses.v1", records(40, 8))
        await eventually(lambda: shown_total(page), lambda text: text == "48", within=60)
        await assert_page_matches(
            page,
            await api(analytics, "/v1/overview"),
            await api(analytics, "/v1/partners", limit=15),
        )
        await browser.close()

    print(f"screenshot: {tmp_path / 'dashboard.png'}")
    assert problems == []
    assert all(url.startswith(analytics.url) or url.startswith("data:") for url in requested)
