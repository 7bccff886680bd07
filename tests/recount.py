"""Analytics numbers counted by hand: random responses, and the summaries the API must show for
them, computed in plain Python independently of the service's code.

Shared by the tests that kill analytics processes (integration) and scale the services out (e2e).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from shared.taxonomy import load_taxonomy
from tests.support import ServiceProcess, run_service_command

LISTS = ("development_priorities", "capacity_needs", "collaboration_interests")
CITIES = {
    "VN": ["Đà Nẵng", "Hà Nội"],
    "ID": ["Surabaya", "Semarang"],
    "KE": ["Kisumu"],
    "BR": ["Recife", "Curitiba"],
    "LK": ["Colombo"],
    "PH": ["Iloilo"],
}


def with_focal_points(
    rng: random.Random,
    prefix: str,
    count: int,
    share: float,
    run_id: str,
    *,
    languages: tuple[str, ...] = ("en",),
    consenting: float = 1.0,
) -> list[dict[str, Any]]:
    """`count` random responses (ids `<prefix>-<n>`); a `share` of them has a focal point with
    an address of its own (`fp<n>@<run_id>.example.org`, so the run's mail can be found), in
    one of `languages`, consenting with probability `consenting`."""
    bodies = []
    for n in range(count):
        body = random_response(rng, f"{prefix}-{n}")
        body.pop("focal_point", None)
        if rng.random() < share:
            body["focal_point"] = {
                "name": f"Focal Point {n}",
                "email": f"fp{n}@{run_id}.example.org",
                "language": rng.choice(languages),
                "consent": rng.random() < consenting,
            }
        bodies.append(body)
    return bodies


def random_response(rng: random.Random, response_id: str) -> dict[str, Any]:
    taxonomy = load_taxonomy()
    country = rng.choice(sorted(CITIES))
    submitted = datetime(2024, 5, 1, tzinfo=UTC) + timedelta(minutes=rng.randrange(60 * 24 * 40))
    body: dict[str, Any] = {
        "response_id": response_id,
        "survey_id": rng.choice(sorted(taxonomy.surveys)),
        "source": "generic",
        "submitted_at": submitted.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "received_at": submitted.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "respondent": {
            "type": rng.choice(sorted(taxonomy.respondent_types)),
            "organization": f"Institution {rng.randrange(50)}",
            "country": country,
            "city": rng.choice(CITIES[country]),
        },
        "development_priorities": rng.sample(sorted(taxonomy.sdgs), rng.randrange(4)),
        "capacity_needs": rng.sample(sorted(taxonomy.themes), rng.randrange(4)),
        "collaboration_interests": rng.sample(sorted(taxonomy.interest_codes), rng.randrange(4)),
    }
    if rng.random() < 0.3:
        body["focal_point"] = {
            "name": "Focal Point",
            "email": f"fp{rng.randrange(10**6)}@example.org",
            "consent": rng.random() < 0.8,
        }
    return body


def unique_responses(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first record of each response (survey and response id): the only one that counts."""
    first: dict[tuple[str, str], dict[str, Any]] = {}
    for body in records:
        first.setdefault((body["survey_id"], body["response_id"]), body)
    return list(first.values())


def hand_summary(bodies: list[dict[str, Any]], *, overall: bool) -> dict[str, Any]:
    """The numbers an API summary of exactly `bodies` must show, counted here in plain Python
    (cities keyed `country|city`, matrices as nested counts)."""
    # Needs and interests are themes or modalities; a code the taxonomy does not know yet
    # counts as a theme.
    modalities = set(load_taxonomy().modalities)
    kinds, countries, cities, days = Counter[str](), Counter[str](), Counter[str](), Counter[str]()
    named = {field: Counter[str]() for field in LISTS}
    country_priorities: dict[str, Counter[str]] = {}
    type_themes: dict[str, Counter[str]] = {}
    for body in bodies:
        who = body["respondent"]
        kinds[who["type"]] += 1
        countries[who["country"]] += 1
        cities[f"{who['country']}|{who['city']}"] += 1
        days[body["submitted_at"][:10]] += 1
        for field in LISTS:
            named[field].update(body[field])
        if body["development_priorities"]:
            country_priorities.setdefault(who["country"], Counter()).update(
                body["development_priorities"]
            )
        if wanted := {*body["capacity_needs"], *body["collaboration_interests"]} - modalities:
            type_themes.setdefault(who["type"], Counter()).update(wanted)
    shown: dict[str, Any] = {
        "total": len(bodies),
        "by_respondent_type": dict(kinds),
        "by_country": dict(countries),
        "by_city": dict(cities),
        "by_day": dict(days),
        **{field: dict(counts) for field, counts in named.items()},
        "country_priorities": {row: dict(n) for row, n in country_priorities.items()},
        "type_themes": {row: dict(n) for row, n in type_themes.items()},
    }
    if overall:
        shown["surveys"] = dict(Counter(body["survey_id"] for body in bodies))
    return shown


def api_numbers(answer: dict[str, Any], fields: Iterable[str]) -> dict[str, Any]:
    """The `fields` of an API summary in `hand_summary`'s shape."""
    shown = {field: answer[field] for field in fields}
    shown["by_city"] = {f"{c['country']}|{c['city']}": c["count"] for c in answer["by_city"]}
    return shown


def facts(body: dict[str, Any]) -> dict[str, str]:
    """What the API filters a response by."""
    who = body["respondent"]
    return {
        "country": who["country"],
        "respondent_type": who["type"],
        "survey_id": body["survey_id"],
    }


async def assert_api_exact(
    environment: dict[str, str],
    service: ServiceProcess,
    records: list[dict[str, Any]],
    rng: random.Random,
) -> None:
    """The HTTP API's numbers, per survey and overall, unfiltered and filtered by country and
    respondent type, equal `hand_summary` of the unique responses; `verify` exits 0."""
    bodies = unique_responses(records)
    one = rng.choice(bodies)  # its country, type and survey make filters that match something
    country, kind, survey = (
        one["respondent"]["country"],
        one["respondent"]["type"],
        one["survey_id"],
    )

    def matching(**wanted: str) -> list[dict[str, Any]]:
        return [body for body in bodies if wanted.items() <= facts(body).items()]

    views: list[tuple[str, dict[str, str], list[dict[str, Any]], bool]] = [
        ("/v1/overview", {}, bodies, True),
        ("/v1/overview", {"country": country}, matching(country=country), True),
        ("/v1/overview", {"respondent_type": kind}, matching(respondent_type=kind), True),
        (
            "/v1/overview",
            {"country": country, "respondent_type": kind},
            matching(country=country, respondent_type=kind),
            True,
        ),
        ("/v1/overview", {"survey_id": survey}, matching(survey_id=survey), True),
        (
            f"/v1/surveys/{survey}/summary",
            {"country": country, "respondent_type": kind},
            matching(survey_id=survey, country=country, respondent_type=kind),
            False,
        ),
    ]
    surveys = sorted({body["survey_id"] for body in bodies})
    views += [(f"/v1/surveys/{s}/summary", {}, matching(survey_id=s), False) for s in surveys]
    # Every cell, small ones included: the operator's view.
    operator = {"authorization": f"Bearer {environment['OPERATOR_TOKEN']}"}
    async with httpx.AsyncClient(base_url=service.url, timeout=60, headers=operator) as client:
        for path, params, expected, overall in views:
            answer = await client.get(path, params=params)
            assert answer.status_code == 200, answer.text
            wanted = hand_summary(expected, overall=overall)
            assert api_numbers(answer.json(), wanted) == wanted, (path, params)
        listed = (await client.get("/v1/surveys")).json()
    assert {s["survey_id"]: s["total"] for s in listed} == {
        s: len(matching(survey_id=s)) for s in surveys
    }
    verify = await asyncio.to_thread(run_service_command, "analytics", "verify", environment)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    print(f"API exact: {len(views)} views; {verify.stdout.strip()}")
