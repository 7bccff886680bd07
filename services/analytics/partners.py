"""Pure: potential city partners, ranked, each with its score and the reasons for it. No I/O.

A city (a country and a city name) is scored from the unique responses that came from it. Every
factor counts something and earns a fixed number of points each time its count doubles
(`weight * log2(1 + count)`): no factor saturates, so a city with forty contactable focal points
still ranks above one with twenty, yet the fortieth adds far less than the first, and sheer volume
cannot drown the other factors.

- contact: 10 points per doubling of the responses with a consenting focal point: the project
  can only work with a city it may contact;
- institutions: 6 points per doubling of the responding institutions: several institutions of
  one city answering is a sign of local ownership (distinct organisation names,
  case-insensitive; a response that names none counts as one institution);
- breadth: for each project theme the city needs or wants to cooperate on, half a point per
  doubling of its *signal*: the responses naming it, those with a consenting focal point
  counting twice (a theme a contactable person asks for is worth more than a passing mention);
- modalities: the same for each way of cooperating asked for (knowledge exchange,
  co-financing, ...);
- overlap: when themes are asked for, 8 points per doubling of the signal of each asked theme
  the city shares; cities sharing none are left out.

Each factor's points are rounded (half up) to a whole number and the score is their sum, so the
reasons always add up to it. Higher score first; ties go to more responses, then country and city.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field, replace

# Points per doubling of each factor's count.
CONTACT_WEIGHT = 10.0
INSTITUTION_WEIGHT = 6.0
THEME_WEIGHT = 0.5
MODALITY_WEIGHT = 0.5
OVERLAP_WEIGHT = 8.0
CONTACTABLE_SIGNAL = 2  # what a response with a consenting focal point adds to a code's signal
STRONGEST_SHOWN = 5  # codes named in a reason, strongest first


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
    themes: Counter[str] = field(default_factory=Counter)  # code -> signal
    modalities: Counter[str] = field(default_factory=Counter)


def doublings(count: float) -> float:
    """How many times a count has doubled, counting from none: 1 -> 1, 3 -> 2, 7 -> 3."""
    return math.log2(1 + count)


def whole_points(points: float) -> int:
    """Points rounded half up (`round` would send 0.5 and 2.5 down)."""
    return math.floor(points + 0.5)


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
        signal = CONTACTABLE_SIGNAL if response.consenting_focal_point else 1
        city.themes.update(dict.fromkeys(response.themes, signal))
        city.modalities.update(dict.fromkeys(response.modalities, signal))
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
    themes, modalities = _strongest(city.themes), _strongest(city.modalities)
    matched = sorted(wanted & set(themes))
    reasons = [
        Reason(
            "contact",
            whole_points(CONTACT_WEIGHT * doublings(city.focal_points)),
            f"{city.focal_points} response(s) with a focal point who agreed to be contacted"
            if city.focal_points
            else "no focal point agreed to be contacted yet",
        ),
        Reason(
            "institutions",
            whole_points(INSTITUTION_WEIGHT * doublings(institutions)),
            f"{institutions} responding institution(s) in {city.responses} response(s)",
        ),
        Reason(
            "breadth",
            _signal_points(THEME_WEIGHT, city.themes, themes),
            f"{len(themes)} project theme(s) named, by signal (responses naming it, contactable "
            f"ones twice){_signals(city.themes, themes)}",
        ),
        Reason(
            "modalities",
            _signal_points(MODALITY_WEIGHT, city.modalities, modalities),
            f"{len(modalities)} way(s) of cooperating asked for, by signal"
            + _signals(city.modalities, modalities),
        ),
    ]
    if wanted:
        reasons.append(
            Reason(
                "overlap",
                _signal_points(OVERLAP_WEIGHT, city.themes, matched),
                f"shares {len(matched)} of the {len(wanted)} theme(s) asked for, by signal"
                + _signals(city.themes, matched, limit=len(matched)),
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
        themes=themes,
        modalities=modalities,
        matched_themes=matched,
        reasons=reasons,
    )


def _strongest(signals: Counter[str]) -> list[str]:
    return [code for code, _ in sorted(signals.items(), key=lambda kv: (-kv[1], kv[0]))]


def _signal_points(weight: float, signals: Counter[str], codes: Iterable[str]) -> int:
    return whole_points(weight * sum(doublings(signals[code]) for code in codes))


def _signals(signals: Counter[str], codes: list[str], limit: int = STRONGEST_SHOWN) -> str:
    """`: code (signal), ...`, strongest first, for a reason's detail."""
    shown = ", ".join(f"{code} ({signals[code]})" for code in codes[:limit]) or "none"
    more = f" and {len(codes) - limit} more" if len(codes) > limit else ""
    return f": {shown}{more}"
