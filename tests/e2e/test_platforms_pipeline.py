"""Each platform's documented delivery, posted to the intake process, counted by the analytics
process with the codes the survey's questions stand for.

The expected codes are written out from the fixtures and the forms' field reference (FORMS.md,
taxonomy.yaml): Kobo sends codes with `_` for `-` and lower-case countries, Typeform, Jotform and
the bridge send the answers' label texts and English country names.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.platforms import (
    HERE,
    SECRETS,
    Request,
    google_forms_request,
    jotform_request,
    kobo_request,
    secret_variable,
    typeform_request,
)
from tests.support import (
    OPERATOR,
    WEBHOOK_SECRET,
    Stack,
    assert_clean_exit,
    eventually,
    signed_headers,
    start_service,
)

pytestmark = pytest.mark.e2e

SURVEY = "cities-2024-priorities"
SUMMARY = f"/v1/surveys/{SURVEY}/summary"


def generic_request(survey_id: str) -> Request:
    """The canonical JSON of the export fixture's Jakarta line, signed as a Standard Webhook."""
    lines = (HERE / "generic-responses.jsonl").read_text(encoding="utf-8").splitlines()
    (line,) = [line for line in lines if '"legacy-0003"' in line]
    body = line.encode()
    return f"/v1/webhooks/generic/{survey_id}", body, signed_headers(body, "legacy-0003")


DELIVERIES = [
    generic_request,
    kobo_request,
    typeform_request,
    jotform_request,
    google_forms_request,
]

# One response per delivery.
EXPECTED_ALL = {
    "total": 5,
    "by_respondent_type": {"local_government": 3, "national_government": 1, "cso": 1},
    "by_country": {"VN": 2, "ID": 1, "LK": 1, "TR": 1},
    "by_city": [
        {"country": "VN", "city": "Đà Nẵng", "count": 2},
        {"country": "ID", "city": "Jakarta", "count": 1},
        {"country": "LK", "city": "කොළඹ", "count": 1},
        {"country": "TR", "city": "İstanbul", "count": 1},
    ],
    "development_priorities": {"sdg-11": 4, "sdg-6": 2, "sdg-13": 1, "sdg-5": 1, "sdg-10": 1},
    "capacity_needs": {
        "urban-planning": 3,
        "digital-governance": 2,
        "disaster-risk-reduction": 1,
        "gender-inclusion": 1,
    },
    "collaboration_interests": {
        "knowledge-exchange": 4,
        "climate-resilience": 2,
        "disaster-risk-reduction": 1,
        "expertise-exchange": 1,
        "city-twinning": 1,
    },
}


def alike(
    total: int, respondent_type: str, priorities: str, needs: str, interests: str
) -> dict[str, Any]:
    """The counts of `total` responses that all gave the same answers (codes space-separated)."""
    return {
        "total": total,
        "by_respondent_type": {respondent_type: total},
        "development_priorities": dict.fromkeys(priorities.split(), total),
        "capacity_needs": dict.fromkeys(needs.split(), total),
        "collaboration_interests": dict.fromkeys(interests.split(), total),
    }


# One country each (Kobo and Typeform both answered for Đà Nẵng, with the same codes).
EXPECTED_BY_COUNTRY = {
    "ID": alike(1, "local_government", "sdg-11", "urban-planning", "knowledge-exchange"),
    "VN": alike(
        2,
        "local_government",
        "sdg-11 sdg-6",
        "urban-planning digital-governance",
        "climate-resilience knowledge-exchange",
    ),
    "LK": alike(
        1,
        "national_government",
        "sdg-11 sdg-13",
        "disaster-risk-reduction",
        "disaster-risk-reduction expertise-exchange",
    ),
    "TR": alike(1, "cso", "sdg-5 sdg-10", "gender-inclusion", "city-twinning knowledge-exchange"),
}


@dataclass(frozen=True)
class Services:
    intake: str
    analytics: str


@pytest.fixture
def services(stack: Stack, run_id: str, tmp_path: Path) -> Iterator[Services]:
    environment = {
        **stack.environment(run_id),
        secret_variable(SURVEY, "generic"): WEBHOOK_SECRET,
        **{secret_variable(SURVEY, source): secret for source, secret in SECRETS.items()},
    }
    started = [start_service(name, environment, tmp_path) for name in ("intake", "analytics")]
    try:
        for service in started:
            service.wait_ready(within=120)
        yield Services(*(service.url for service in started))
    finally:
        for service in started:
            assert_clean_exit(service, service.terminate())


def counted(summary: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """The fields of `summary` named in `fields`, cities in a stable order."""
    picked = {name: summary[name] for name in fields}
    if "by_city" in picked:
        picked["by_city"] = sorted(
            picked["by_city"], key=lambda city: (-city["count"], city["country"], city["city"])
        )
    return picked


async def test_receive_platform_webhooks_counted_with_codes(services: Services) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        for build in DELIVERIES:
            path, body, headers = build(SURVEY)
            answer = await client.post(f"{services.intake}{path}", content=body, headers=headers)
            assert answer.status_code == 202, (path, answer.text)
            again = await client.post(f"{services.intake}{path}", content=body, headers=headers)
            assert again.status_code == 200, (path, again.text)  # counted once, below

        async def summary(**query: str) -> dict[str, Any]:
            answer = await client.get(
                f"{services.analytics}{SUMMARY}", params=query, headers=OPERATOR
            )
            assert answer.status_code == 200, answer.text
            loaded: dict[str, Any] = answer.json()
            return loaded

        overall = await eventually(summary, lambda s: s["total"] >= 5, within=90)
        assert counted(overall, EXPECTED_ALL) == counted(EXPECTED_ALL, EXPECTED_ALL)
        # Kobo, Typeform and the bridge carry their submission time; Jotform's post has none.
        assert overall["by_day"]["2024-05-02"] == 4
        for country, expected in EXPECTED_BY_COUNTRY.items():
            assert counted(await summary(country=country), expected) == expected, country
