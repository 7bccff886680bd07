"""A deterministic sample shaped like the six 2024 surveys (about 4,100 responses). Pure.

Cities of the Maritime and Continental Silk Road, named in their own scripts; a realistic mix of
respondent types per survey; about a quarter of the responses leave a consenting focal point.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.taxonomy import load_taxonomy

SEED = 2024

# (survey id, responses, respondent-type weights)
SURVEYS: list[tuple[str, int, dict[str, int]]] = [
    (
        "cities-2024-priorities",
        1120,
        {
            "local_government": 60,
            "city_organization": 15,
            "national_government": 10,
            "cso": 8,
            "academia": 5,
            "other": 2,
        },
    ),
    (
        "cities-2024-capacity",
        830,
        {
            "local_government": 55,
            "city_organization": 20,
            "national_government": 10,
            "cso": 7,
            "academia": 6,
            "private_sector": 2,
        },
    ),
    (
        "cities-2024-collaboration",
        720,
        {
            "local_government": 50,
            "city_organization": 20,
            "igo": 8,
            "cso": 12,
            "academia": 6,
            "private_sector": 4,
        },
    ),
    (
        "partners-2024-institutions",
        560,
        {"igo": 30, "cso": 30, "academia": 20, "private_sector": 15, "other": 5},
    ),
    ("national-2024-focal", 390, {"national_government": 80, "igo": 10, "other": 10}),
    (
        "cities-2024-pilots",
        480,
        {"local_government": 65, "city_organization": 20, "national_government": 10, "cso": 5},
    ),
]
FOCAL_POINT_SHARE = 0.25
RESENT_SHARE = 0.03  # platforms re-send some deliveries: the intake must count them once

# (ISO country, city in its own script, focal-point language, weight)
CITIES: list[tuple[str, str, str, int]] = [
    ("VN", "Đà Nẵng", "en", 6),
    ("VN", "Hải Phòng", "en", 4),
    ("VN", "Thành phố Hồ Chí Minh", "en", 5),
    ("ID", "Jakarta", "en", 6),
    ("ID", "Surabaya", "en", 4),
    ("ID", "Semarang", "en", 3),
    ("LK", "කොළඹ", "en", 4),
    ("LK", "ගාල්ල", "en", 2),
    ("MV", "މާލެ", "en", 2),
    ("IN", "കൊച്ചി", "en", 3),
    ("IN", "मुंबई", "en", 5),
    ("IN", "சென்னை", "en", 4),
    ("BD", "চট্টগ্রাম", "en", 4),
    ("MM", "ရန်ကုန်", "en", 3),
    ("TH", "กรุงเทพมหานคร", "en", 4),
    ("KH", "ភ្នំពេញ", "fr", 3),
    ("MY", "Melaka", "en", 3),
    ("PH", "Maynila", "en", 4),
    ("CN", "泉州", "zh", 4),
    ("CN", "广州", "zh", 4),
    ("CN", "西安", "zh", 4),
    ("PK", "کراچی", "en", 4),
    ("PK", "گوادر", "en", 2),
    ("IR", "تبریز", "en", 2),
    ("IR", "اصفهان", "en", 2),
    ("OM", "مسقط", "ar", 3),
    ("AE", "دبي", "ar", 3),
    ("EG", "الإسكندرية", "ar", 3),
    ("DJ", "Djibouti", "fr", 2),
    ("KE", "Mombasa", "en", 4),
    ("TZ", "Dar es Salaam", "en", 3),
    ("UZ", "Samarqand", "ru", 3),
    ("UZ", "Buxoro", "ru", 2),
    ("KZ", "Алматы", "ru", 4),
    ("KG", "Бишкек", "ru", 3),
    ("TJ", "Душанбе", "ru", 2),
    ("TR", "İstanbul", "en", 4),
    ("AZ", "Bakı", "ru", 3),
    ("GE", "თბილისი", "en", 2),
]
ORGANISATIONS = {
    "local_government": "City administration",
    "national_government": "Ministry of Urban Development",
    "city_organization": "Municipal utility",
    "igo": "Regional development bank",
    "cso": "Community foundation",
    "academia": "Institute of urban studies",
    "private_sector": "Chamber of commerce",
    "other": "Independent network",
}


@dataclass(frozen=True)
class SampleResponse:
    """One response as the generic webhook takes it, and the survey it goes to."""

    survey_id: str
    body: dict[str, Any]


def _weighted(rng: random.Random, weights: dict[str, int]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _some(
    rng: random.Random, codes: list[str], low: int, high: int, favourites: list[str]
) -> list[str]:
    # Favourites (a region's usual priorities) are three times as likely as the rest.
    weights = [3 if code in favourites else 1 for code in codes]
    picked: list[str] = []
    for _ in range(rng.randint(low, high)):
        code = rng.choices(codes, weights=weights)[0]
        if code not in picked:
            picked.append(code)
    return picked


def generate(seed: int = SEED) -> list[SampleResponse]:
    """Every sample response, the same list on every run."""
    rng = random.Random(seed)
    taxonomy = load_taxonomy()
    sdgs, themes = list(taxonomy.sdgs), list(taxonomy.themes)
    interests = themes + list(taxonomy.modalities)
    coastal = [
        "sdg-6",
        "sdg-11",
        "sdg-13",
        "sdg-14",
        "climate-resilience",
        "disaster-risk-reduction",
        "water-sanitation",
        "trade-logistics",
    ]
    inland = [
        "sdg-8",
        "sdg-9",
        "sdg-11",
        "sdg-7",
        "transport-mobility",
        "energy-transition",
        "tourism-culture",
        "digital-governance",
    ]
    inland_countries = {"UZ", "KZ", "KG", "TJ", "AZ", "GE"}
    start = datetime(2024, 3, 4, 8, 0, tzinfo=UTC)
    responses: list[SampleResponse] = []
    for survey_index, (survey_id, count, type_weights) in enumerate(SURVEYS):
        opens = start + timedelta(days=30 * survey_index)
        for n in range(count):
            country, city, language, _ = rng.choices(CITIES, weights=[c[3] for c in CITIES])[0]
            favourites = inland if country in inland_countries else coastal
            kind = _weighted(rng, type_weights)
            submitted = opens + timedelta(minutes=rng.randint(0, 60 * 24 * 45))
            body: dict[str, Any] = {
                "response_id": f"{survey_id}-{n:05d}",
                "survey_id": survey_id,
                "submitted_at": submitted.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "respondent": {
                    "type": kind,
                    "organization": f"{ORGANISATIONS[kind]}, {city}",
                    "country": country,
                    "city": city,
                },
                "development_priorities": _some(rng, sdgs, 1, 5, favourites),
                "capacity_needs": _some(rng, themes, 1, 4, favourites),
                "collaboration_interests": _some(rng, interests, 1, 4, favourites),
                "answers": {"wave": survey_index + 1},
            }
            if rng.random() < FOCAL_POINT_SHARE:
                person = rng.randint(1, 600)  # some people answer several surveys
                body["focal_point"] = {
                    "name": f"Focal Point {person:03d}",
                    "email": f"focal.point{person:03d}@cities.example.org",
                    "language": language,
                    "consent": True,
                }
            responses.append(SampleResponse(survey_id, body))
    return responses


def resent(responses: list[SampleResponse], seed: int = SEED) -> list[SampleResponse]:
    """The deliveries a platform sends twice (same response, a second time)."""
    rng = random.Random(seed + 1)
    return rng.sample(responses, int(len(responses) * RESENT_SHARE))


PILOTS: list[dict[str, Any]] = [
    {
        "pilot_id": "pilot-2025-007",
        "title": "Flood early warning for coastal districts",
        "summary": "Co-financing and peer support for community-based flood early warning in "
        "coastal districts, with a partner city that runs one today.",
        "themes": ["climate-resilience", "disaster-risk-reduction"],
        "sdgs": ["sdg-13"],
        "modalities": ["pilot-cofinancing", "knowledge-exchange"],
        "eligible_countries": ["VN", "ID", "LK", "BD", "PH", "MV"],
        "lead_agency": "UNOSSC",
        "apply_by": "2099-03-31",
        "url": "https://example.org/pilots/007",
    },
    {
        "pilot_id": "pilot-2025-011",
        "title": "Digital one-stop shops for city services",
        "summary": "Peer learning and technology transfer to open digital one-stop shops for "
        "permits and payments in secondary cities.",
        "themes": ["digital-governance", "smart-cities"],
        "sdgs": ["sdg-16", "sdg-9"],
        "modalities": ["technology-transfer", "expertise-exchange"],
        "eligible_countries": [],
        "lead_agency": "UNOSSC",
        "apply_by": "2099-06-30",
        "url": "https://example.org/pilots/011",
    },
    {
        "pilot_id": "pilot-2025-014",
        "title": "Clean water for caravan cities",
        "summary": "Water supply and sanitation upgrades in Central Asian cities, with city "
        "twinning and co-financing.",
        "themes": ["water-sanitation"],
        "sdgs": ["sdg-6"],
        "modalities": ["city-twinning"],
        "eligible_countries": ["UZ", "KZ", "KG", "TJ"],
        "lead_agency": "UNOSSC",
        "apply_by": "2099-09-30",
        "url": "https://example.org/pilots/014",
    },
]
