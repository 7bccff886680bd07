"""The preference centre in a real headless browser (Debian chromium), in English and Arabic:
the page of the link in a pilot email renders in the person's language and direction, shows what
is held and what was sent, saves a change that a reload shows, and the next pilots honour it."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Page, async_playwright

from services.notifier.emails import LANGUAGE_NAMES, label, strings
from tests.integration.notifier_support import focal_response, pilot, records
from tests.support import (
    OPERATOR,
    Mailbox,
    ServiceProcess,
    Stack,
    confirm_focal_points,
    eventually,
    produce,
    start_service,
)

pytestmark = pytest.mark.e2e

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PREFERENCES_LINK = re.compile(r"https?://\S+(/v1/preferences\?token=[A-Za-z0-9_.-]+)")
# Each reader switches from climate resilience to housing, and to this language.
SWITCH = {"en": "fr", "ar": "ar"}


@pytest.fixture
async def notifier(stack: Stack, run_id: str, tmp_path: Path) -> AsyncIterator[ServiceProcess]:
    environment = {
        **stack.environment(run_id),
        "PUBLIC_BASE_URL": "https://notify.example.org",
        "POLL_INTERVAL_SECONDS": "0.2",
    }
    service = start_service("notifier", environment, tmp_path)
    try:
        service.wait_ready()
        yield service
    finally:
        service.terminate()


async def emails_to(mailbox: Mailbox, address: str, count: int) -> list[EmailMessage]:
    found = await eventually(
        lambda: mailbox.messages_to(address), lambda m: len(m) >= count, within=60
    )
    parsed = []
    for summary in found:
        message = message_from_bytes(await mailbox.raw(summary["ID"]), policy=policy.default)
        assert isinstance(message, EmailMessage)
        parsed.append(message)
    return parsed


async def delivered(client: httpx.AsyncClient, notifier: str, pilot_id: str) -> dict[str, int]:
    answer = await client.get(
        f"{notifier}/v1/deliveries", params={"pilot_id": pilot_id}, headers=OPERATOR
    )
    return dict(answer.json()["counts"])


async def checked_themes(page: Page) -> list[str]:
    return list(
        await page.locator("input[name=themes]:checked").evaluate_all("xs => xs.map(x => x.value)")
    )


@pytest.mark.parametrize("language", ["en", "ar"])
async def test_preferences_page_change_saved_and_next_pilot_honours_it(
    notifier: ServiceProcess, stack: Stack, run_id: str, language: str, tmp_path: Path
) -> None:
    assert shutil.which(CHROMIUM), f"{CHROMIUM} missing: run `make browser`"
    person = f"prefs-{language}-{run_id}@example.org"
    mailbox = Mailbox(stack.mail_api)
    environment = stack.environment(run_id)
    await produce(
        stack.kafka,
        environment["TOPIC_RESPONSES"],
        records(focal_response(1, person, interests=["climate-resilience"], language=language)),
    )
    first = pilot(f"first-{run_id}", title=f"First {run_id}")
    flood = pilot(f"flood-{run_id}", title=f"Flood {run_id}", sdgs=[])
    homes = pilot(f"homes-{run_id}", title=f"Homes {run_id}", themes=["housing"], sdgs=[])
    async with httpx.AsyncClient(timeout=15) as client:
        await confirm_focal_points(client, mailbox, person, notifier=notifier.url)
        await produce(stack.kafka, environment["TOPIC_PILOTS"], records(first))
        [email] = await emails_to(mailbox, person, 1)
        text = email.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        found = PREFERENCES_LINK.search(text)
        assert found, text
        page_url = notifier.url + found.group(1)

        problems: list[str] = []
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = await browser.new_page()
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda error: problems.append(str(error)))
            await page.goto(page_url)
            t = strings(language)

            html = page.locator("html")
            shown = (await html.get_attribute("lang"), await html.get_attribute("dir"))
            assert shown == (language, "rtl" if language == "ar" else "ltr")
            assert await page.locator("h1").inner_text() == t["prefs_title"]
            assert await page.locator("#held-email").inner_text() == person
            assert await page.locator("#held-name").inner_text() == "Nguyễn Văn An"
            assert await page.locator("#held-city").inner_text() == "Đà Nẵng"
            assert await page.locator("#held-country").inner_text() == "VN"
            assert await page.locator("#held-confirmed").inner_text() != t["prefs_not_yet"]
            sent = await page.locator("#sent").inner_text()
            assert first.title in sent and t["prefs_confirmation_email"] in sent
            assert await checked_themes(page) == ["climate-resilience", "sdg-6"]
            await page.screenshot(path=str(tmp_path / f"preferences-{language}.png"))

            await page.uncheck("input[value=climate-resilience]")
            await page.uncheck("input[value=sdg-6]")
            await page.check("input[value=housing]")
            await page.select_option("#language", SWITCH[language])
            await page.click("#save")
            after = strings(SWITCH[language])
            await page.locator("#note").wait_for()
            assert await page.locator("#note").inner_text() == after["prefs_saved"]

            await page.goto(page_url)  # a reload shows what was saved
            assert await page.locator("html").get_attribute("lang") == SWITCH[language]
            assert await checked_themes(page) == ["housing"]
            assert await page.locator("#language").input_value() == SWITCH[language]
            held_themes = await page.locator("#held-themes").inner_text()
            assert held_themes == label("housing", SWITCH[language])
            assert LANGUAGE_NAMES[language] in await page.locator("#held-language").inner_text()
            await browser.close()

        # The next pilots: climate resilience no longer reaches them, housing does, in the
        # language they chose.
        await produce(stack.kafka, environment["TOPIC_PILOTS"], records(flood, homes))
        await eventually(
            lambda: delivered(client, notifier.url, homes.pilot_id), lambda c: c == {"sent": 1}
        )
        not_sent = await delivered(client, notifier.url, flood.pilot_id)
        emails = await emails_to(mailbox, person, 2)

    assert problems == []
    assert not_sent == {}
    subjects = sorted(str(message["Subject"]) for message in emails)
    expected_title = (
        f"\u2068Homes {run_id}\u2069" if SWITCH[language] == "ar" else f"Homes {run_id}"
    )
    assert strings(SWITCH[language])["subject"].format(title=expected_title) in subjects
    [newest] = [m for m in emails if f"Homes {run_id}" in str(m["Subject"])]
    assert newest["Content-Language"] == SWITCH[language]
