"""Pure planning of the high-cardinality breakdowns: counters kept out of the version document.

A respondent types their city, so `by_city` has no bound: about 47,000 distinct cities would pass
MongoDB's 16 MiB document limit. Such a field therefore lives in *parts*, immutable documents of
at most `PART_ENTRIES` counters each, which every version of an aggregate document names:

- `buckets`: the field's counters up to the last compaction, split by a hash of the counter
  name into a power-of-two number of parts (as few as keep each part within `PART_ENTRIES`);
- `deltas`: the increments of the batches applied since, one or a few parts per batch.

A writer adds a batch's increments as new delta parts (its cost follows the batch, not the
field's size) and names them in the next version, which it inserts as usual: the version's
unique `_id` stays the one compare-and-set, so parts written by a writer that lost the race are
never named. When the deltas grow to half the buckets (and to `COMPACT_MIN`), a writer
compacts: it re-partitions buckets and deltas into new buckets, a cost that doubling keeps at a
constant per counter on average. When there are more than `MAX_DELTAS` delta parts, it merges the
deltas alone. Readers sum the named parts.

The parts of one compaction and the deltas after it form a *generation*, stored in a collection
of its own: a superseded generation is dropped whole, which is cheap, where deleting documents
one by one from a shared collection would cost a scan of it on FerretDB each time. Deltas merged
within a generation stay until the generation is dropped; they count towards the next
compaction, so a generation holds at most about `1 + COMPACT_RATIO` times its live counters.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

SPLIT_FIELDS = ("by_city",)
# 4,096 counters of at most ~500 bytes each (a 120-character city, escaped, with its country)
# stay near 2 MiB, far below the 16 MiB limit; typical ones are about 50 bytes (200 KiB).
PART_ENTRIES = 4096
MAX_DELTAS = 16
COMPACT_RATIO = 0.5
# Small fields are not compacted at every batch (each compaction starts a collection): their
# deltas gather up to this many counters first.
COMPACT_MIN = 1024

BUCKETS = "buckets"
DELTAS = "deltas"
BUCKET_ENTRIES = "bucket_entries"
DELTA_ENTRIES = "delta_entries"
GARBAGE_ENTRIES = "garbage_entries"
COLLECTION = "collection"


@dataclass(frozen=True)
class Layout:
    """Where one split field of one version lives: its generation's collection, part ids, and
    how many counters each kind holds (delta counters counted per part, so a city in two deltas
    counts twice; `garbage_entries`: those of merged deltas still in the collection)."""

    collection: str = ""
    buckets: tuple[str, ...] = ()
    deltas: tuple[str, ...] = ()
    bucket_entries: int = 0
    delta_entries: int = 0
    garbage_entries: int = 0

    @property
    def part_ids(self) -> tuple[str, ...]:
        """Every part a reader sums."""
        return (*self.buckets, *self.deltas)

    def stored(self) -> dict[str, Any]:
        """The layout as a version document holds it."""
        return {
            COLLECTION: self.collection,
            BUCKETS: list(self.buckets),
            DELTAS: list(self.deltas),
            BUCKET_ENTRIES: self.bucket_entries,
            DELTA_ENTRIES: self.delta_entries,
            GARBAGE_ENTRIES: self.garbage_entries,
        }

    @classmethod
    def from_stored(cls, stored: Mapping[str, Any] | None) -> Layout:
        """The inverse of `stored` (an empty layout when absent)."""
        stored = stored or {}
        return cls(
            collection=str(stored.get(COLLECTION, "")),
            buckets=tuple(stored.get(BUCKETS, ())),
            deltas=tuple(stored.get(DELTAS, ())),
            bucket_entries=int(stored.get(BUCKET_ENTRIES, 0)),
            delta_entries=int(stored.get(DELTA_ENTRIES, 0)),
            garbage_entries=int(stored.get(GARBAGE_ENTRIES, 0)),
        )


Kind = Literal["append", "merge_deltas", "compact"]


@dataclass(frozen=True)
class Step:
    """What the next version does with one split field: `append` the batch's delta parts,
    `merge_deltas` into fewer delta parts, or `compact` everything into new buckets. `reads` are
    the parts of the current layout it sums; the next layout no longer names them."""

    kind: Kind
    reads: tuple[str, ...] = ()


def split_increments(delta: Mapping[str, int]) -> tuple[Counter[str], dict[str, Counter[str]]]:
    """Dotted counter increments -> (those of the version document, those of each split field
    keyed by the counter name below the field)."""
    main: Counter[str] = Counter()
    split: dict[str, Counter[str]] = {}
    for path, n in delta.items():
        top, _, rest = path.partition(".")
        if top in SPLIT_FIELDS and rest:
            split.setdefault(top, Counter())[rest] += n
        else:
            main[path] += n
    return main, split


def _hash(name: str) -> int:
    # The same in every process (not Python's salted `hash`).
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big")


def bucket_of(name: str, buckets: int) -> int:
    """The bucket of a counter name among `buckets` (a power of two): doubling the buckets splits
    each in two."""
    return _hash(name) & (buckets - 1)


def partition(counters: Mapping[str, int], limit: int = PART_ENTRIES) -> list[dict[str, int]]:
    """Non-zero `counters` split into the fewest hash buckets (a power of two) that keep every
    bucket within `limit` counters; empty buckets left out, the rest in bucket order."""
    live = [(_hash(name), name, n) for name, n in counters.items() if n]
    buckets = 1
    while buckets * limit < len(live):  # fewer buckets cannot hold them all
        buckets *= 2
    while True:
        parts: list[dict[str, int]] = [{} for _ in range(buckets)]
        for hashed, name, n in live:
            parts[hashed & (buckets - 1)][name] = n
        if max(len(part) for part in parts) <= limit:
            return [part for part in parts if part]
        buckets *= 2


def decide(layout: Layout, delta: Mapping[str, int], forced: bool = False) -> Step:
    """The next version's step for one field: compact when the deltas, with this batch and the
    merged ones, reach `COMPACT_RATIO` of the buckets and `COMPACT_MIN` (always when there is
    no generation yet, or when `forced`); merge the deltas when there would be more than
    `MAX_DELTAS` of them; else append."""
    added = sum(1 for n in delta.values() if n)
    extra = layout.delta_entries + layout.garbage_entries + added
    if (
        forced
        or not layout.collection
        or extra >= max(COMPACT_RATIO * layout.bucket_entries, COMPACT_MIN)
    ):
        return Step("compact", layout.part_ids)
    if len(layout.deltas) + len(partition(delta)) > MAX_DELTAS:
        return Step("merge_deltas", layout.deltas)
    return Step("append")


def new_parts(
    step: Step, delta: Mapping[str, int], read: Mapping[str, Mapping[str, int]]
) -> list[dict[str, int]]:
    """The parts the step writes: `delta` added to the parts it reads (`read`: id -> counters,
    holding at least `step.reads`), re-partitioned."""
    total = merged(read[part] for part in step.reads)
    total.update(delta)
    return partition(total)


def next_layout(
    step: Step,
    layout: Layout,
    new_ids: Iterable[str],
    written: list[dict[str, int]],
    collection: str,
) -> Layout:
    """The layout after `step`, its `written` parts stored under `new_ids` (in order) in
    `collection` (a new generation's when compacting, else `layout.collection`)."""
    ids = tuple(new_ids)
    entries = sum(len(part) for part in written)
    if step.kind == "compact":
        return Layout(collection=collection, buckets=ids, bucket_entries=entries)
    merging = step.kind == "merge_deltas"
    return Layout(
        collection=layout.collection,
        buckets=layout.buckets,
        deltas=ids if merging else (*layout.deltas, *ids),
        bucket_entries=layout.bucket_entries,
        delta_entries=entries if merging else layout.delta_entries + entries,
        garbage_entries=layout.garbage_entries + (layout.delta_entries if merging else 0),
    )


def merged(parts: Iterable[Mapping[str, int]]) -> Counter[str]:
    """The sum of parts' counters (counters that sum to zero left out; negative ones kept: a
    delta part of a correction takes a count away from a city)."""
    total: Counter[str] = Counter()
    for part in parts:
        total.update(part)
    return Counter({name: n for name, n in total.items() if n})
