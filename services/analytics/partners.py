"""Pure: potential city partners, ranked, each with its score and the reasons for it. No I/O.

A city (a country and a city name) is scored from the unique responses that came from it:

- contact: 10 points per response with a consenting focal point, at most 3 (30): the project can
  only work with a city it may contact;
- institutions: 5 points per responding institution, at most 5 (25): several institutions of one
  city answering is a sign of local ownership (distinct organisation names, case-insensitive; a
  response that names none counts as one institution);
- breadth: 2 points per distinct project theme the city needs or wants to cooperate on, at most
  10 (20);
- modalities: 1 point per distinct way of cooperating it asks for (knowledge exchange,
  co-financing, ...), at most 8;
- overlap: when themes are asked for, 10 points per asked theme the city shares; cities sharing
  none are left out.

Higher score first; ties go to more responses, then country and city.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field, replace

FOCAL_POINT_POINTS, FOCAL_POINT_CAP = 10, 3
INSTITUTION_POINTS, INSTITUTION_CAP = 5, 5
THEME_POINTS, THEME_CAP = 2, 10
MODALITY_POINTS, MODALITY_CAP = 1, 8
OVERLAP_POINTS = 10


@dataclass(frozen=True)
class CityResponse:
    """What the ranking needs of one unique response; nothing personal."""

    country: str
    city: str
    organization: str | None
    consenting_focal_point: bool
    themes: frozenset[str]
    modalities: frozenset[str]


@dataclass(frozen=True)
class Reason:
    """One factor of a score: its points and why, in words."""

    factor: str
    points: int
    detail: str


@dataclass(frozen=True)
class Partner:
    """A ranked city."""

    rank: int
    country: str
    city: str
    score: int
    responses: int
    institutions: int
    consenting_focal_points: int
    themes: list[str]
    modalities: list[str]
    matched_themes: list[str]
    reasons: list[Reason] = field(default_factory=list)


@dataclass
class _City:
    responses: int = 0
    focal_points: int = 0
    organizations: set[str] = field(default_factory=set)
    unnamed: int = 0
    themes: Counter[str] = field(default_factory=Counter)
    modalities: Counter[str] = field(default_factory=Counter)


def city_response(
    country: str,
    city: str,
    organization: str | None,
    consenting_focal_point: bool,
    codes: Iterable[str],
    project_themes: Collection[str],
    modalities: Collection[str],
) -> CityResponse:
    """One response's share of the ranking; `codes` are its capacity needs and interests."""
    named = set(codes)
    return CityResponse(
        country=country,
        city=city,
        organization=" ".join(organization.casefold().split()) if organization else None,
        consenting_focal_point=consenting_focal_point,
        themes=frozenset(named & set(project_themes)),
        modalities=frozenset(named & set(modalities)),
    )


def rank(
    responses: Iterable[CityResponse],
    *,
    themes: Collection[str] = (),
    country: str | None = None,
    limit: int | None = None,
) -> list[Partner]:
    """Cities ranked as potential partners, best first (filtered by `country` and `themes`)."""
    cities: dict[tuple[str, str], _City] = {}
    for response in responses:
        if country is not None and response.country != country:
            continue
        city = cities.setdefault((response.country, response.city), _City())
        city.responses += 1
        city.focal_points += response.consenting_focal_point
        if response.organization:
            city.organizations.add(response.organization)
        else:
            city.unnamed += 1
        city.themes.update(response.themes)
        city.modalities.update(response.modalities)
    wanted = set(themes)
    scored = [
        _score(where, city, wanted)
        for where, city in cities.items()
        if not wanted or wanted & set(city.themes)
    ]
    scored.sort(key=lambda p: (-p.score, -p.responses, p.country, p.city))
    ranked = [replace(partner, rank=number) for number, partner in enumerate(scored, start=1)]
    return ranked if limit is None else ranked[:limit]


def _score(where: tuple[str, str], city: _City, wanted: set[str]) -> Partner:
    institutions = len(city.organizations) + city.unnamed
    matched = sorted(wanted & set(city.themes))
    by_count = [code for code, _ in sorted(city.themes.items(), key=lambda kv: (-kv[1], kv[0]))]
    modalities = [
        code for code, _ in sorted(city.modalities.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    reasons = [
        Reason(
            "contact",
            FOCAL_POINT_POINTS * min(city.focal_points, FOCAL_POINT_CAP),
            f"{city.focal_points} response(s) with a focal point who agreed to be contacted"
            if city.focal_points
            else "no focal point agreed to be contacted yet",
        ),
        Reason(
            "institutions",
            INSTITUTION_POINTS * min(institutions, INSTITUTION_CAP),
            f"{institutions} responding institution(s) in {city.responses} response(s)",
        ),
        Reason(
            "breadth",
            THEME_POINTS * min(len(by_count), THEME_CAP),
            f"{len(by_count)} project theme(s) named: {', '.join(by_count) or 'none'}",
        ),
        Reason(
            "modalities",
            MODALITY_POINTS * min(len(modalities), MODALITY_CAP),
            f"{len(modalities)} way(s) of cooperating asked for: {', '.join(modalities) or 'none'}",
        ),
    ]
    if wanted:
        reasons.append(
            Reason(
                "overlap",
                OVERLAP_POINTS * len(matched),
                f"shares {len(matched)} of the {len(wanted)} theme(s) asked for: "
                + ", ".join(matched),
            )
        )
    return Partner(
        rank=0,
        country=where[0],
        city=where[1],
        score=sum(reason.points for reason in reasons),
        responses=city.responses,
        institutions=institutions,
        consenting_focal_points=city.focal_points,
        themes=by_count,
        modalities=modalities,
        matched_themes=matched,
        reasons=reasons,
    )
