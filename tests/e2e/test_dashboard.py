"""The dashboard in a real headless browser (Debian chromium): it loads without console errors,
shows the API's public numbers (small cells hidden, no partners, no filters), and after signing
in with the operator token every number, the filters and the partners; it refreshes as responses
arrive."""

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
    OPERATOR,
    OPERATOR_TOKEN,
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
SMALL = 2  # responses from a city, under the public threshold of 5


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


def small_city(count: int) -> list[tuple[bytes, bytes]]:
    """Responses from Hội An (VN): fewer than the public threshold."""
    made = []
    for n in range(count):
        body = canonical_response(
            f"generic:dash-small{n}",
            respondent={"type": "local_government", "country": "VN", "city": "Hội An"},
        )
        event = SurveyResponse.model_validate(
            {**body, "source": "generic", "received_at": datetime.now(UTC)}
        )
        made.append((event.response_id.encode(), event.model_dump_json().encode()))
    return made


@pytest.fixture
async def analytics(stack: Stack, run_id: str, tmp_path: Path) -> AsyncIterator[ServiceProcess]:
    environment = stack.environment(run_id)
    await produce(stack.kafka, environment["TOPIC_RESPONSES"], records(0, 40) + small_city(SMALL))
    service = start_service("analytics", environment, tmp_path)
    try:
        service.wait_ready()
        yield service
    finally:
        service.terminate()


async def api(
    service: ServiceProcess, path: str, headers: dict[str, str] | None = None, **params: Any
) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=service.url, timeout=10, headers=headers) as client:
        answer = await client.get(path, params=params)
        answer.raise_for_status()
        body: dict[str, Any] = answer.json()
        return body


async def shown_bars(page: Page, field: str) -> dict[str, int]:
    # Read in one go in the page: a refresh redraws the bars between two reads from here.
    rows: list[list[str]] = await page.locator(f"#{field} .bar").evaluate_all(
        "rows => rows.map(r => [r.dataset.key, r.querySelector('.count').textContent])"
    )
    return {key: int(count.replace(",", "")) for key, count in rows}


async def shown_total(page: Page) -> str:
    return await page.locator("#total").inner_text()


async def assert_page_matches(
    page: Page, summary: dict[str, Any], ranking: dict[str, Any] | None
) -> None:
    await eventually(lambda: shown_total(page), lambda text: text == f"{summary['total']:,}")
    cities = {f"{c['country']}|{c['city']}": c["count"] for c in summary["by_city"][:12]}
    await eventually(lambda: shown_bars(page, "by_city"), lambda shown: shown == cities)
    for field in ("development_priorities", "capacity_needs", "by_respondent_type", "by_country"):
        assert await shown_bars(page, field) == dict(list(summary[field].items())[:12]), field
    note = await page.locator("#suppressed").inner_text()
    if summary["suppressed_below"] is None:
        assert note == ""
    else:
        assert (
            note == f"Public numbers: cells under {summary['suppressed_below']} responses hidden."
        )
    if ranking is None:
        assert await page.locator("#partners-table").is_hidden()
        assert await page.locator("#partners-signin").is_visible()
        assert await page.locator("#partners tr").count() == 0
        for name in ("country", "respondent_type", "theme"):
            assert await page.locator(f"#{name}").is_disabled(), name
        return
    assert await page.locator("#partners-signin").is_hidden()

    async def shown() -> list[tuple[str, str]]:
        rows: list[list[str]] = await page.locator("#partners tr").evaluate_all(
            "rows => rows.map(r => [r.dataset.city, r.querySelector('td.score').textContent])"
        )
        return [(city, score) for city, score in rows]

    # The ranking comes from a pass over the stored responses, which the page's poll may have
    # found under way: the next poll (3 s) shows it.
    expected = [(f"{p['country']}|{p['city']}", str(p["score"])) for p in ranking["partners"]]
    await eventually(shown, lambda rows: rows == expected, within=15)


async def test_dashboard_shows_the_api_numbers(
    analytics: ServiceProcess, stack: Stack, run_id: str, tmp_path: Path
) -> None:
    assert shutil.which(CHROMIUM), f"{CHROMIUM} missing: run `make browser`"

    async def total() -> int:
        return int((await api(analytics, "/v1/overview"))["total"])

    await eventually(total, lambda n: n == 40 + SMALL, within=60)
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

        public = await api(analytics, "/v1/overview")
        await assert_page_matches(page, public, None)
        assert "Hội An" not in await page.locator("main").inner_text()
        await page.screenshot(path=str(tmp_path / "dashboard-public.png"), full_page=True)

        logged = len(problems)
        await page.fill("#token", "not-the-token")
        await page.click("#sign-in")
        await eventually(
            lambda: page.locator("#signin-error").inner_text(),
            lambda text: text == "The operator token was refused.",
        )
        await assert_page_matches(page, public, None)
        # The browser logs the refused requests themselves; nothing else may go wrong.
        refused, problems[logged:] = problems[logged:], []
        assert all("401" in problem for problem in refused), refused

        await page.fill("#token", OPERATOR_TOKEN)
        await page.click("#sign-in")
        full = await api(analytics, "/v1/overview", OPERATOR)
        assert "VN|Hội An" in {f"{c['country']}|{c['city']}" for c in full["by_city"]}
        await assert_page_matches(
            page, full, await api(analytics, "/v1/partners", OPERATOR, limit=15)
        )
        await page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)

        await page.select_option("#country", "KE")
        await page.select_option("#theme", "housing")
        await assert_page_matches(
            page,
            await api(analytics, "/v1/overview", OPERATOR, country="KE"),
            await api(analytics, "/v1/partners", OPERATOR, country="KE", theme="housing", limit=15),
        )
        await page.select_option("#country", "")
        await page.select_option("#theme", "")

        await produce(stack.kafka, f"test-{run_id}.survey.responses.v1", records(40, 8))
        await eventually(lambda: shown_total(page), lambda text: text == str(48 + SMALL), within=60)

        async def ranked() -> dict[str, Any]:
            return await api(analytics, "/v1/partners", OPERATOR, limit=15)

        ranking = await eventually(
            ranked, lambda r: sum(p["responses"] for p in r["partners"]) == 48 + SMALL
        )
        await assert_page_matches(page, await api(analytics, "/v1/overview", OPERATOR), ranking)

        await page.click("#sign-out")
        await assert_page_matches(page, await api(analytics, "/v1/overview"), None)
        await browser.close()

    print(f"screenshot: {tmp_path / 'dashboard.png'}")
    assert problems == []
    assert all(url.startswith(analytics.url) or url.startswith("data:") for url in requested)
