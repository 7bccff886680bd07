"""`python -m demo`: post the sample through the intake, announce pilots, show what happened.

Expects the services running (`make up`) with the random development secrets of
`.stack/dev-secrets.env` in the environment (`make demo` reads them).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from standardwebhooks.webhooks import Webhook

from demo.sample import PILOTS, SampleResponse, generate, resent
from services.intake.surveys import default_secret_env
from services.notifier.matching import focal_point_codes, shared_codes
from shared import topics
from shared.events import PilotAnnounced, SurveyResponse
from shared.kafka import consumer_lag
from shared.taxonomy import load_taxonomy

CONCURRENCY = 16
WAIT_SECONDS = 300
console = Console()


@dataclass
class Endpoints:
    """Where the services and the SMTP server's API listen."""

    intake: str = os.environ.get("DEMO_INTAKE_URL", "http://127.0.0.1:8000")
    analytics: str = os.environ.get("DEMO_ANALYTICS_URL", "http://127.0.0.1:8001")
    notifier: str = os.environ.get("DEMO_NOTIFIER_URL", "http://127.0.0.1:8002")
    mail_api: str = os.environ.get("DEMO_MAIL_API_URL", "http://127.0.0.1:8025")
    kafka: str = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    responses_topic: str = os.environ.get("TOPIC_RESPONSES", topics.RESPONSES)
    operator_token: str = os.environ.get("OPERATOR_TOKEN", "")


@dataclass
class Outcomes:
    """What the intake answered."""

    statuses: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


async def post_all(
    client: httpx.AsyncClient, urls: Endpoints, items: list[SampleResponse]
) -> Outcomes:
    """Post every item as a signed generic webhook, `CONCURRENCY` at a time, with a progress bar."""
    outcomes = Outcomes()
    limit = asyncio.Semaphore(CONCURRENCY)
    with _progress() as progress:
        task = progress.add_task("Posting responses", total=len(items))

        async def post(item: SampleResponse) -> None:
            secret = os.environ[default_secret_env(item.survey_id, "generic")].split()[0]
            body = json.dumps(item.body, ensure_ascii=False)
            message_id, now = str(uuid.uuid4()), datetime.now(UTC)
            headers = {
                "content-type": "application/json",
                "webhook-id": message_id,
                "webhook-timestamp": str(int(now.timestamp())),
                "webhook-signature": Webhook(secret).sign(message_id, now, body),
            }
            url = f"{urls.intake}/v1/webhooks/generic/{item.survey_id}"
            async with limit:
                for _ in range(5):  # 503 means "retry later", as platforms do
                    answer = await client.post(url, content=body.encode(), headers=headers)
                    if answer.status_code != 503:
                        break
                    await asyncio.sleep(float(answer.headers.get("retry-after", "1")))
            status = answer.json().get("status", str(answer.status_code))
            outcomes.statuses[status] += 1
            if answer.status_code >= 400:
                outcomes.errors.append(f"{item.body['response_id']}: {answer.text[:200]}")
            progress.advance(task)

        await asyncio.gather(*(post(item) for item in items))
    return outcomes


async def wait_for_total(
    client: httpx.AsyncClient, urls: Endpoints, expected: int
) -> dict[str, Any]:
    """Poll the overview until analytics has counted `expected` unique responses."""
    deadline = time.monotonic() + WAIT_SECONDS
    with _progress() as progress:
        task = progress.add_task("Analytics counting", total=expected)
        while True:
            overview = (await client.get(f"{urls.analytics}/v1/overview")).json()
            progress.update(task, completed=min(overview["total"], expected))
            if overview["total"] >= expected or time.monotonic() > deadline:
                return dict(overview)
            await asyncio.sleep(0.5)


async def wait_until_consumed(urls: Endpoints) -> None:
    """Wait until analytics and the notifier's registry have read every response.

    Pilots are announced after that, so the emails depend on the sample alone, not on timing.
    """
    groups = [
        os.environ.get("ANALYTICS_GROUP_ID", "analytics"),
        f"{os.environ.get('NOTIFIER_GROUP_ID', 'notifier')}.registry",
    ]
    deadline = time.monotonic() + WAIT_SECONDS
    with console.status("Waiting for the consumers to catch up…"):
        while time.monotonic() < deadline:
            lags = [await consumer_lag(urls.kafka, group, urls.responses_topic) for group in groups]
            if not any(lags):
                return
            await asyncio.sleep(1)
    behind = dict(zip(groups, lags, strict=True))
    raise SystemExit(f"consumers still behind after {WAIT_SECONDS}s: {behind}")


def expected_emails(sample: list[SampleResponse]) -> dict[str, int]:
    """Emails per pilot that the sample calls for: latest response per focal point wins."""
    latest: dict[str, SurveyResponse] = {}
    for item in sample:
        if "focal_point" not in item.body:
            continue
        response = SurveyResponse.model_validate(
            {**item.body, "source": "generic", "received_at": item.body["submitted_at"]}
        )
        assert response.focal_point is not None
        email = str(response.focal_point.email).lower()
        if email not in latest or latest[email].submitted_at < response.submitted_at:
            latest[email] = response
    counts: dict[str, int] = {}
    for pilot_data in PILOTS:
        pilot = PilotAnnounced.model_validate(pilot_data)
        counts[pilot.pilot_id] = sum(
            1
            for r in latest.values()
            if shared_codes(pilot, focal_point_codes(r), r.respondent.country)
        )
    return counts


async def announce_and_wait(
    client: httpx.AsyncClient, urls: Endpoints
) -> dict[str, dict[str, int]]:
    """Announce the sample pilots; wait until no delivery is pending; counts per pilot."""
    headers = {"authorization": f"Bearer {urls.operator_token}"}
    for pilot in PILOTS:
        answer = await client.post(f"{urls.intake}/v1/pilots", json=pilot, headers=headers)
        if answer.status_code not in (200, 202):
            raise SystemExit(f"announcing {pilot['pilot_id']} failed: {answer.text}")
    deadline = time.monotonic() + WAIT_SECONDS
    previous: dict[str, dict[str, int]] = {}
    with console.status("Notifier sending emails…"):
        while time.monotonic() < deadline:
            counts = {}
            for pilot in PILOTS:
                answer = await client.get(
                    f"{urls.notifier}/v1/deliveries",
                    params={"pilot_id": pilot["pilot_id"]},
                    headers=headers,
                )
                counts[pilot["pilot_id"]] = answer.json()["counts"]
            busy = any("pending" in c or "sending" in c for c in counts.values())
            if not busy and counts == previous and any(counts.values()):
                return counts
            previous = counts
            await asyncio.sleep(2)
    return previous


def report(
    urls: Endpoints,
    posted: Outcomes,
    unique: int,
    overview: dict[str, Any],
    emails: dict[str, dict[str, int]],
    expected: dict[str, int],
) -> bool:
    """Print the summary; True when analytics counted exactly the unique responses posted."""
    taxonomy = load_taxonomy()
    table = Table(title="Unique responses per survey")
    table.add_column("survey")
    table.add_column("responses", justify="right")
    for survey_id, total in overview["surveys"].items():
        table.add_row(taxonomy.surveys.get(survey_id, survey_id), str(total))
    table.add_row("[bold]all surveys", f"[bold]{overview['total']}")
    console.print(table)
    top = list(overview["development_priorities"].items())[:5]
    console.print(
        "Top development priorities: "
        + "; ".join(f"{taxonomy.label(code)} ({count})" for code, count in top)
    )
    console.print(f"Intake answers: {dict(posted.statuses)}")
    for pilot_id, counts in emails.items():
        console.print(
            f"Emails for {pilot_id}: {counts} (matching focal points: {expected[pilot_id]})"
        )
    sent_as_expected = all(
        sum(emails.get(pilot_id, {}).values()) == n for pilot_id, n in expected.items()
    )
    exact = bool(overview["total"] == unique) and sent_as_expected
    verdict = "[green]equals" if exact else "[red]DIFFERS FROM"
    console.print(
        f"Analytics total {overview['total']} {verdict} the {unique} unique responses posted."
    )
    console.print(
        "\nWhere to look:\n"
        f"  API        {urls.analytics}/v1/overview  ·  {urls.analytics}/docs\n"
        f"  Dashboard  {urls.analytics}/\n"
        f"  Emails     {urls.mail_api}/api/v1/messages (SMTP server's API)\n"
        f"  Intake     {urls.intake}/docs\n"
        "  Stop all with `make down`."
    )
    return exact


async def run() -> int:
    """The demo; exit status 0 when every number adds up."""
    urls = Endpoints()
    sample = generate()
    again = resent(sample)
    async with httpx.AsyncClient(timeout=30) as client:
        posted = await post_all(client, urls, sample + again)
        if posted.errors:
            console.print(f"[red]{len(posted.errors)} rejected, first: {posted.errors[0]}")
            return 1
        overview = await wait_for_total(client, urls, len(sample))
        await wait_until_consumed(urls)
        emails = await announce_and_wait(client, urls)
    expected = expected_emails(sample)
    exact = report(urls, posted, len(sample), overview, emails, expected)
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(run()))
