"""Pure auditing: recounts bounded by watermarks, drift between running and recounted counters.

A running aggregate document has counted exactly the responses stored at a position at or below
its watermarks (`applied.p<partition>`); responses above them are stored but not applied yet and
will be counted when their batch is read again. So a recount that honours the same bounds is
comparable with the running document at any moment, even while consumers run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from services.analytics.aggregates import OVERALL, Counted, survey_key

Marks = dict[int, int]
WATERMARKS = "applied"
KEY = "key"
VERSION = "version"
LATEST = "latest"
PARTS = "parts"  # where a version's high-cardinality counters are (see `parts.py`)
GARBAGE = "garbage"
NOT_COUNTERS = frozenset({"_id", WATERMARKS, KEY, VERSION, LATEST, PARTS, GARBAGE})


@dataclass(frozen=True)
class Drift:
    """One counter whose running value differs from the recount."""

    document: str
    path: str
    running: int
    recount: int

    def __str__(self) -> str:
        return f"{self.document} {self.path}: running {self.running}, recount {self.recount}"


def watermarks(document: Mapping[str, Any] | None) -> Marks:
    """The per-partition watermarks of an aggregate document (`{"p3": 41}` -> `{3: 41}`)."""
    applied = (document or {}).get(WATERMARKS, {})
    return {int(name[1:]): int(offset) for name, offset in applied.items()}


def watermark_fields(marks: Mapping[int, int]) -> dict[str, int]:
    """Watermarks as stored: `{3: 41}` -> `{"p3": 41}`."""
    return {f"p{partition}": offset for partition, offset in sorted(marks.items())}


def flatten(document: Mapping[str, Any], prefix: str = "") -> Counter[str]:
    """The counters of an aggregate document as dotted paths (watermarks and `_id` left out)."""
    flat: Counter[str] = Counter()
    for key, value in document.items():
        if not prefix and key in NOT_COUNTERS:
            continue
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = int(value)
    return flat


def nest(counters: Mapping[str, int]) -> dict[str, Any]:
    """Dotted counter paths as the nested document `$inc` would have built."""
    return add_counters({}, counters)


def counters_of(document: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of the counters of an aggregate document, without `_id`, key, version, watermarks."""
    return nest(flatten(document or {}))


def add_counters(document: Mapping[str, Any], delta: Mapping[str, int]) -> dict[str, Any]:
    """A copy of the nested `document` with each dotted path of `delta` added (like `$inc`)."""
    result = nest_copy(document)
    for path, n in sorted(delta.items()):
        *parents, leaf = path.split(".")
        node = result
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = node.get(leaf, 0) + n
    return result


def nest_copy(document: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of nested counters (only dicts and numbers)."""
    return {
        key: nest_copy(value) if isinstance(value, Mapping) else value
        for key, value in document.items()
    }


def recount_within(
    items: Iterable[Counted], marks: Callable[[str], Mapping[int, int]]
) -> dict[str, Counter[str]]:
    """Increments per document of the counted responses and changes of response states at or
    below that document's watermarks."""
    by_document: dict[str, Counter[str]] = {}
    for item in items:
        for key in (survey_key(item.survey_id), OVERALL):
            if item.offset <= marks(key).get(item.partition, -1):
                by_document.setdefault(key, Counter()).update(item.delta(key))
    return by_document


def drifts(
    running: Mapping[str, Mapping[str, Any]], recount: Mapping[str, Counter[str]]
) -> list[Drift]:
    """Every counter of every document whose running value is not its recount (0 when absent)."""
    found: list[Drift] = []
    for key in sorted(set(running) | set(recount)):
        have = flatten(running.get(key, {}))
        want = recount.get(key, Counter())
        for path in sorted(set(have) | set(want)):
            if have[path] != want[path]:
                found.append(Drift(key, path, have[path], want[path]))
    return found
