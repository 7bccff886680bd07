"""Pure: small-cell suppression of the public summaries. No I/O.

A *cell* is one value of a breakdown (a country, a city, a day, a code, a matrix entry), counted
from some number of responses. In public answers:

1. Primary: a cell counted from fewer than `min_cell` responses is left out (its key too: a city
   name typed by one person must not appear at all). Every breakdown of a summary is treated so,
   one added later included: any `{key: n}` or `{row: {column: n}}` field but `surveys`.
2. Secondary: a hidden cell must not be computable from published sums. The published figures
   obey linear relations, and one relation with a single hidden term gives that term away
   (`total` minus the countries shown is the one hidden country). So for every relation below,
   when exactly one of its terms is hidden, the smallest shown term is hidden too (repeated
   until no relation has exactly one hidden term):
   - in each view, `total` = the sum of `by_respondent_type`, of `by_country`, of `by_day`
     (each response has one type, one country, one day);
   - in each view, `by_country[c]` = the sum of `by_city` of country `c`;
   - in each view, `development_priorities[sdg]` = the sum over countries of
     `country_priorities[c][sdg]`;
   - across views, every cell of the overview = the sum of that cell in each survey's summary
     (the overview is their sum).

What stays shown: `total` and the responses per survey (`surveys`, `/v1/surveys`). They are not
breakdowns by something a respondent is: they say how many answered a published questionnaire.
Answers do not say how many cells were hidden: for a small vocabulary (five respondent types)
that count would tell which unlisted codes are not zero.

Limits: each relation is protected on its own; combining several relations (or comparing
answers over time as responses arrive) can narrow a hidden value to a range, never to a key
that was not published.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

Cell = tuple[str, ...]  # (view, field, key...): view "" is the overview, else a survey id
OVERVIEW = ""
PARTITIONS_OF_TOTAL = ("by_respondent_type", "by_country", "by_day")
# Responses per survey and per review status: not breakdowns by a respondent's trait.
SHOWN = frozenset({"surveys", "by_review"})


def code_fields(shaped: Mapping[str, Any]) -> list[str]:
    """The breakdowns `{key: n}` of a summary: every such field but `surveys`, so that a
    breakdown added to the summaries later is suppressed too (fail closed)."""
    return [
        field
        for field, value in shaped.items()
        if field not in SHOWN
        and isinstance(value, Mapping)
        and all(isinstance(n, int) for n in value.values())
    ]


def matrix_fields(shaped: Mapping[str, Any]) -> list[str]:
    """The two-level breakdowns `{row: {column: n}}` of a summary."""
    return [
        field
        for field, value in shaped.items()
        if isinstance(value, Mapping)
        and value
        and all(
            isinstance(row, Mapping) and all(isinstance(n, int) for n in row.values())
            for row in value.values()
        )
    ]


def suppress_views(
    views: Mapping[str, Mapping[str, Any]], min_cell: int
) -> dict[str, dict[str, Any]]:
    """Public copies of summaries that belong together: `views[""]` is the overview (if any) and
    the others are the surveys' summaries it sums. Each copy says `suppressed_below`."""
    values: dict[Cell, int] = {}
    for view, shaped in views.items():
        values.update(cells(view, shaped))
    hidden = hidden_cells(values, relations(views, values), min_cell)
    return {view: _without(view, shaped, hidden, min_cell) for view, shaped in views.items()}


def suppress(shaped: Mapping[str, Any], min_cell: int) -> dict[str, Any]:
    """One summary on its own (no other view published with it)."""
    return suppress_views({OVERVIEW: shaped}, min_cell)[OVERVIEW]


def cells(view: str, shaped: Mapping[str, Any]) -> dict[Cell, int]:
    """Every non-zero breakdown cell of one summary."""
    found: dict[Cell, int] = {}
    for field in code_fields(shaped):
        for code, n in shaped[field].items():
            found[(view, field, code)] = int(n)
    for city in shaped.get("by_city", []):
        found[(view, "by_city", city["country"], city["city"])] = int(city["count"])
    for field in matrix_fields(shaped):
        for row, columns in shaped[field].items():
            for column, n in columns.items():
                found[(view, field, row, column)] = int(n)
    return {cell: n for cell, n in found.items() if n > 0}


def relations(
    views: Mapping[str, Mapping[str, Any]], values: Mapping[Cell, int]
) -> list[list[Cell]]:
    """The published sums, each as the list of its terms (the `("", "total")`-like totals are
    terms that are never hidden)."""
    found: list[list[Cell]] = []
    by_group: defaultdict[tuple[str, ...], list[Cell]] = defaultdict(list)
    for cell in values:
        view, field, *keys = cell
        if field in PARTITIONS_OF_TOTAL:
            by_group[(view, field)].append(cell)
        elif field == "by_city":
            by_group[(view, "by_country", keys[0])].append(cell)
        elif field == "country_priorities":
            by_group[(view, "development_priorities", keys[1])].append(cell)
    for group, terms in by_group.items():
        view, field, *keys = group
        parent = (view, "total") if not keys else group
        found.append([parent, *terms])
    if OVERVIEW in views and len(views) > 1:
        across: defaultdict[tuple[str, ...], list[Cell]] = defaultdict(list)
        for cell in values:
            across[cell[1:]].append(cell)
        found.extend(terms for terms in across.values() if len(terms) > 1)
    return found


def hidden_cells(
    values: Mapping[Cell, int], relations: Iterable[list[Cell]], min_cell: int
) -> set[Cell]:
    """The cells to leave out: those under `min_cell`, and enough others that no relation has
    exactly one hidden term. Terms not in `values` (totals) are never hidden."""
    hidden = {cell for cell, n in values.items() if n < min_cell}
    listed = [[t for t in terms if t in values or t[1] == "total"] for terms in relations]
    containing: defaultdict[Cell, list[int]] = defaultdict(list)
    for number, terms in enumerate(listed):
        for term in terms:
            containing[term].append(number)
    pending = list(range(len(listed)))
    while pending:
        terms = listed[pending.pop()]
        if sum(term in hidden for term in terms) != 1:
            continue
        shown = [term for term in terms if term in values and term not in hidden]
        if not shown:
            continue  # only a total is left: the hidden term's key stays unknown
        second = min(shown, key=lambda term: (values[term], term))
        hidden.add(second)
        pending.extend(containing[second])
    return hidden


def _without(
    view: str, shaped: Mapping[str, Any], hidden: set[Cell], min_cell: int
) -> dict[str, Any]:
    public = dict(shaped)
    for field in code_fields(shaped):
        public[field] = {
            code: n for code, n in shaped[field].items() if (view, field, code) not in hidden
        }
    if "by_city" in shaped:
        public["by_city"] = [
            city
            for city in shaped["by_city"]
            if (view, "by_city", city["country"], city["city"]) not in hidden
        ]
        # The public count of cities is that of the cities it shows: a count of hidden ones would
        # tell how many small cells there are.
        if "distinct_cities" in shaped:
            public["distinct_cities"] = len(public["by_city"])
    for field in matrix_fields(shaped):
        rows = {
            row: {c: n for c, n in columns.items() if (view, field, row, c) not in hidden}
            for row, columns in shaped[field].items()
        }
        public[field] = {row: columns for row, columns in rows.items() if columns}
    public["suppressed_below"] = min_cell
    return public
