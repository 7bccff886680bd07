"""The analytics API's filters, partner ranking and OpenAPI document against the real servers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from services.analytics.app import create_app
from services.analytics.settings import AnalyticsSettings
from shared.events import SurveyResponse
from tests.support import (
    OPERATOR,
    Stack,
    canonical_response,
    eventually,
    produce,
    serving,
    settings_for,
)

pytestmark = pytest.mark.integration

SECRETS = ("Private Person", "private@example.org", "free text stays inside", "Secret Institute")


def event(number: int, **overrides: Any) -> SurveyResponse:
    body = canonical_response(f"generic:api{number}", **overrides)
    return SurveyResponse.model_validate(
        {**body, "source": "generic", "received_at": datetime.now(UTC)}
    )


def responses() -> list[SurveyResponse]:
    """Da Nang: 4 local-government responses of 2 institutions, 2 with consenting focal points;
    Kisumu: 3 CSO responses of one institution, none contactable; Colombo: 1 national-government
    response in another survey."""
    focal = {"name": "Private Person", "email": "private@example.org", "consent": True}
    withdrawn = {**focal, "consent": False}
    kisumu = {"type": "cso", "country": "KE", "city": "Kisumu", "organization": "Secret Institute"}
    colombo = {"type": "national_government", "country": "LK", "city": "Colombo"}
    return [
        event(1, focal_point=focal, answers={"comments": "free text stays inside"}),
        event(2, focal_point=focal, collaboration_interests=["housing", "pilot-cofinancing"]),
        event(3, focal_point=withdrawn),
        event(4, respondent={**canonical_response("x")["respondent"], "organization": "Utility"}),
        *(event(10 + n, respondent=kisumu, capacity_needs=["water-sanitation"]) for n in range(3)),
        event(20, survey_id="cities-2024-capacity", respondent=colombo),
    ]


@pytest.fixture
async def client(stack: Stack, run_id: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings_for(AnalyticsSettings, stack.environment(run_id))
    items = responses()
    await produce(
        stack.kafka,
        settings.topic_responses,
        [(r.response_id.encode(), r.model_dump_json().encode()) for r in items],
    )
    async with serving(create_app(settings)) as client:
        # These tests check the operator's numbers; test_analytics_access.py the public ones.
        client.headers.update(OPERATOR)

        async def total() -> int:
            return int((await client.get("/v1/overview")).json()["total"])

        await eventually(total, lambda n: n == len(items), within=60)
        yield client


async def get(client: httpx.AsyncClient, path: str, **params: Any) -> dict[str, Any]:
    answer = await client.get(path, params=params)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def test_overview_filters_by_country_and_type(client: httpx.AsyncClient) -> None:
    running = await get(client, "/v1/overview")
    vietnam = await get(client, "/v1/overview", country="vn", respondent_type="local_government")
    kenya = await get(client, "/v1/overview", country="KE")
    colombo = await get(client, "/v1/overview", survey_id="cities-2024-capacity")

    assert running["computed_from"] == "running aggregates"
    assert vietnam["computed_from"] == "raw responses"
    assert vietnam["filters"] == {
        "survey_id": None,
        "country": "VN",
        "respondent_type": "local_government",
    }
    assert (vietnam["total"], kenya["total"], colombo["total"]) == (4, 3, 1)
    assert kenya["by_respondent_type"] == {"cso": 3}
    assert kenya["capacity_needs"] == {"water-sanitation": 3}
    assert vietnam["surveys"] == {"cities-2024-priorities": 4}
    assert colombo["by_city"] == [{"country": "LK", "city": "Colombo", "count": 1}]
    assert running["total"] == 8


async def test_overview_filter_matching_all_equals_running(client: httpx.AsyncClient) -> None:
    running = await get(client, "/v1/surveys/cities-2024-priorities/summary")
    # Every response of this survey is from VN or KE: the two filtered views add up exactly.
    parts = [
        await get(client, "/v1/surveys/cities-2024-priorities/summary", country=country)
        for country in ("VN", "KE")
    ]

    assert parts[0]["survey_id"] == "cities-2024-priorities"
    for field in ("development_priorities", "by_respondent_type", "by_day"):
        merged: dict[str, int] = {}
        for part in parts:
            for code, n in part[field].items():
                merged[code] = merged.get(code, 0) + n
        assert merged == running[field], field
    assert sum(part["total"] for part in parts) == running["total"] == 7


async def test_filters_unknown_codes_422_naming_each(client: httpx.AsyncClient) -> None:
    answer = await client.get("/v1/overview", params={"country": "XX", "respondent_type": "king"})
    partners = await client.get("/v1/partners", params={"theme": "flying-cars"})

    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in answer.json()["errors"]] == ["country", "respondent_type"]
    assert partners.status_code == 422
    assert partners.json()["errors"] == [
        {"field": "theme", "message": "unknown theme 'flying-cars'"}
    ]


async def test_partners_ranked_with_reasons(client: httpx.AsyncClient) -> None:
    ranking = await get(client, "/v1/partners")

    cities = [(p["rank"], p["city"], p["score"]) for p in ranking["partners"]]
    # Kisumu and Colombo tie on points; Kisumu has more responses.
    assert cities == [(1, "Đà Nẵng", 33), (2, "Kisumu", 9), (3, "Colombo", 9)]
    da_nang = ranking["partners"][0]
    assert da_nang["consenting_focal_points"] == 2  # the withdrawn one is not counted
    assert da_nang["institutions"] == 2
    assert {r["factor"]: r["points"] for r in da_nang["reasons"]} == {
        "contact": 16,
        "institutions": 10,
        "breadth": 5,
        "modalities": 2,
    }


async def test_partners_filtered_by_theme_and_country(client: httpx.AsyncClient) -> None:
    water = await get(client, "/v1/partners", theme="water-sanitation")
    housing_vn = await get(
        client, "/v1/partners", theme=["housing", "urban-planning"], country="VN"
    )
    kenya = await get(client, "/v1/partners", country="KE", limit=1)

    assert [p["city"] for p in water["partners"]] == ["Kisumu"]
    assert water["partners"][0]["matched_themes"] == ["water-sanitation"]
    assert housing_vn["partners"][0]["matched_themes"] == ["housing", "urban-planning"]
    assert [p["city"] for p in kenya["partners"]] == ["Kisumu"]
    assert kenya["cities"] == 1


async def test_no_personal_data_in_any_response(client: httpx.AsyncClient) -> None:
    paths = [
        ("/v1/overview", {}),
        ("/v1/overview", {"country": "KE"}),
        ("/v1/surveys", {}),
        ("/v1/surveys/cities-2024-priorities/summary", {"respondent_type": "cso"}),
        ("/v1/partners", {}),
        ("/v1/partners", {"theme": "water-sanitation"}),
        ("/openapi.json", {}),
    ]
    pages = [(await client.get(path, params=params)).text for path, params in paths]

    for page in pages:
        for secret in SECRETS:
            assert secret.lower() not in page.lower()


async def test_openapi_documents_response_models(client: httpx.AsyncClient) -> None:
    spec = await get(client, "/openapi.json")

    schemas = spec["components"]["schemas"]
    assert {"Overview", "SurveySummary", "PartnerRanking", "Partner", "Reason"} <= set(schemas)
    ok = spec["paths"]["/v1/partners"]["get"]["responses"]["200"]["content"]["application/json"]
    assert ok["schema"] == {"$ref": "#/components/schemas/PartnerRanking"}
    parameters = {p["name"] for p in spec["paths"]["/v1/overview"]["get"]["parameters"]}
    assert parameters == {"survey_id", "country", "respondent_type", "city_limit", "review"}
