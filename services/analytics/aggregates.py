"""Pure aggregation: responses -> counter increments -> summary shapes. No I/O.

An aggregate document holds nested counters. One response adds 1 to a set of counter *paths*
(`by_country.VN`, `country_priorities.VN.sdg-6`, ...); a batch sums them, and the store applies the
sum with a single `$inc`. The same functions recount from the raw responses, so a running total
and a recount can never disagree on what is counted.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

from shared.events import SurveyResponse
from shared.taxonomy import load_taxonomy

OVERALL = "all"

COUNTER_FIELDS = (
    "by_respondent_type",
    "by_country",
    "by_city",
    "development_priorities",
    "capacity_needs",
    "collaboration_interests",
    "by_day",
)
MATRIX_FIELDS = ("country_priorities", "type_themes")


@dataclass(frozen=True)
class Positioned:
    """A response and where it sits in the topic."""

    response: SurveyResponse
    partition: int
    offset: int

    @property
    def position(self) -> dict[str, int]:
        """The position as stored with the raw response."""
        return {"partition": self.partition, "offset": self.offset}

    @cached_property
    def paths(self) -> list[str]:
        """`response_paths` of the response, computed once for its survey's document and the
        overall one."""
        return response_paths(self.response)

    @property
    def survey_id(self) -> str:
        """The response's survey."""
        return self.response.survey_id

    def delta(self, key: str) -> Counter[str]:
        """What the response adds to one aggregate document (`document_increments` of it)."""
        counters: Counter[str] = Counter()
        self.count_into(counters, key)
        return counters

    def count_into(self, counters: Counter[str], key: str) -> None:
        """Add `delta(key)` to `counters`."""
        _count(counters, key, self.paths, self.response.survey_id)


SURVEY_PREFIX = "survey:"


def survey_key(survey_id: str) -> str:
    """The aggregate document of one survey."""
    return f"{SURVEY_PREFIX}{survey_id}"


def survey_of(key: str) -> str:
    """The survey of an aggregate document key (the inverse of `survey_key`)."""
    return key.removeprefix(SURVEY_PREFIX)


def encode_key(text: str) -> str:
    """A free text (a city name) made safe as a MongoDB field name: no `.`, no leading `$`."""
    return text.replace("%", "%25").replace(".", "%2E").replace("$", "%24").replace("\x00", "%00")


def decode_key(key: str) -> str:
    """The inverse of `encode_key`."""
    return key.replace("%00", "\x00").replace("%24", "$").replace("%2E", ".").replace("%25", "%")


def city_key(country: str, city: str) -> str:
    """One city: the same name in two countries is two cities."""
    return encode_key(f"{country}|{city}")


def response_paths(response: SurveyResponse) -> list[str]:
    """Every counter path one response adds 1 to (in its survey's document and overall)."""
    respondent = response.respondent
    # An interest is a theme or a modality; one this taxonomy does not know yet counts as a
    # theme (new codes are mostly themes; a new modality needs a `rebuild` once it is known).
    modalities = load_taxonomy().modalities
    theme_interest = [code for code in response.collaboration_interests if code not in modalities]
    type_themes = dict.fromkeys([*response.capacity_needs, *theme_interest])
    return [
        "total",
        f"by_respondent_type.{respondent.type}",
        f"by_country.{respondent.country}",
        f"by_city.{city_key(respondent.country, respondent.city)}",
        *(f"development_priorities.{code}" for code in response.development_priorities),
        *(f"capacity_needs.{code}" for code in response.capacity_needs),
        *(f"collaboration_interests.{code}" for code in response.collaboration_interests),
        f"by_day.{response.submitted_at.date().isoformat()}",
        *(
            f"country_priorities.{respondent.country}.{code}"
            for code in response.development_priorities
        ),
        *(f"type_themes.{respondent.type}.{code}" for code in type_themes),
    ]


def increments(responses: Iterable[SurveyResponse]) -> dict[str, Counter[str]]:
    """Counter increments per aggregate document: each survey's and the overall one."""
    by_document: dict[str, Counter[str]] = {}
    for response in responses:
        paths = response_paths(response)
        for key in (survey_key(response.survey_id), OVERALL):
            _count(by_document.setdefault(key, Counter()), key, paths, response.survey_id)
    return by_document


class Counted(Protocol):
    """What the aggregate documents apply: a response counted at its position, or a change of
    a response's state (`states.Change`), each with what it adds to a document."""

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...

    @property
    def survey_id(self) -> str: ...

    def delta(self, key: str) -> Counter[str]: ...

    def count_into(self, counters: Counter[str], key: str) -> None: ...


def document_increments(key: str, items: Iterable[Counted]) -> Counter[str]:
    """What these responses or changes add to one document (negative counts kept)."""
    delta: Counter[str] = Counter()
    for item in items:
        item.count_into(delta, key)  # straight into one counter: most batches are new responses
    return delta


def _count(counters: Counter[str], key: str, paths: list[str], survey_id: str) -> None:
    counters.update(paths)
    if key == OVERALL:  # responses per survey: only the overall document has them
        counters[f"surveys.{survey_id}"] += 1


def overall_from_surveys(surveys: Mapping[str, Mapping[str, int]]) -> Counter[str]:
    """The overall counters as the sum of the surveys' (`survey:<id>` -> dotted counters), with
    the responses of each survey: what `increments` puts in the overall document, since every
    response is in exactly one survey's."""
    overall: Counter[str] = Counter()
    for key, counters in surveys.items():
        overall.update(counters)
        overall[f"surveys.{survey_of(key)}"] += counters.get("total", 0)
    return +overall  # no zero counters: a survey without responses is not listed


def summary(
    survey_id: str | None, document: Mapping[str, Any] | None, city_limit: int | None = None
) -> dict[str, Any]:
    """The API shape of one aggregate document (`survey_id=None` for the overview): `by_city`
    holds the `city_limit` largest cities (all when None), `distinct_cities` how many there are."""
    document = document or {}
    shaped: dict[str, Any] = {"survey_id": survey_id} if survey_id else {}
    shaped["total"] = int(document.get("total", 0))
    for field in COUNTER_FIELDS:
        counters = document.get(field, {})
        if field == "by_city":
            shaped[field] = _cities(counters, city_limit)
            shaped["distinct_cities"] = sum(1 for n in counters.values() if n)
        elif field == "by_day":
            shaped[field] = {day: counters[day] for day in sorted(counters) if counters[day]}
        else:
            shaped[field] = _ranked(counters)
    for field in MATRIX_FIELDS:
        rows = {row: _ranked(cells) for row, cells in sorted(document.get(field, {}).items())}
        shaped[field] = {row: cells for row, cells in rows.items() if cells}
    if survey_id is None:
        shaped["surveys"] = _ranked(document.get("surveys", {}))
    shaped["by_review"] = by_review(document)
    return shaped


def by_review(document: Mapping[str, Any]) -> dict[str, int]:
    """Responses by review status. A document counts `total` (not rejected) and
    `by_review.approved` / `.rejected`; the pending ones are the rest of the total, unless a
    view counting approved ones only says how many are pending (`by_review.pending`)."""
    counted = document.get("by_review", {})
    approved = int(counted.get("approved", 0))
    pending = counted.get("pending")
    return {
        "pending": int(document.get("total", 0)) - approved if pending is None else int(pending),
        "approved": approved,
        "rejected": int(counted.get("rejected", 0)),
    }


def limit_cities(shaped: Mapping[str, Any], city_limit: int | None) -> dict[str, Any]:
    """A summary with only its `city_limit` largest cities (all when None); `by_city` is
    already largest first. `distinct_cities` still counts them all."""
    if city_limit is None or "by_city" not in shaped:
        return dict(shaped)
    return {**shaped, "by_city": shaped["by_city"][:city_limit]}


def _ranked(counters: Mapping[str, int]) -> dict[str, int]:
    # Largest first, then by code, so the JSON reads like a chart. A value a correction took
    # back to zero is left out, as if never counted.
    ranked = sorted(counters.items(), key=lambda kv: (-kv[1], kv[0]))
    return {key: int(n) for key, n in ranked if n}


def _cities(counters: Mapping[str, int], limit: int | None) -> list[dict[str, Any]]:
    # Largest first, then by key; only the `limit` largest are sorted when there are many.
    pairs = [(-int(n), key) for key, n in counters.items() if n]
    whole = limit is None or limit >= len(pairs)
    ranked = sorted(pairs) if whole else heapq.nsmallest(limit or 0, pairs)
    cities = []
    for negative, key in ranked:
        count = -negative
        country, _, city = decode_key(key).partition("|")
        cities.append({"country": country, "city": city, "count": count})
    return cities
