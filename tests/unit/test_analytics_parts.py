"""services.analytics.parts: high-cardinality counters split into bounded parts, planned purely."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace

import bson

from services.analytics.aggregates import city_key
from services.analytics.parts import (
    COMPACT_MIN,
    MAX_DELTAS,
    PART_ENTRIES,
    Layout,
    Step,
    bucket_of,
    decide,
    merged,
    new_parts,
    next_layout,
    partition,
    split_increments,
)

MONGODB_LIMIT = 16 * 1024 * 1024


def cities(count: int, first: int = 0) -> Counter[str]:
    return Counter({city_key("VN", f"City {n}"): 1 + n % 3 for n in range(first, first + count)})


class Parts:
    """Parts kept in a dict, written through the pure plan as the store writes them."""

    def __init__(self) -> None:
        self.stored: dict[str, dict[str, int]] = {}
        self.layout = Layout()
        self.written_counters = 0

    def add(self, delta: Counter[str]) -> Step:
        step = decide(self.layout, delta)
        written = new_parts(step, delta, {part: self.stored[part] for part in step.reads})
        ids = [f"part-{len(self.stored) + n}" for n in range(len(written))]
        self.stored.update(zip(ids, written, strict=True))
        self.written_counters += sum(len(part) for part in written)
        collection = f"gen-{len(self.stored)}" if step.kind == "compact" else self.layout.collection
        self.layout = next_layout(step, self.layout, ids, written, collection)
        return step

    def total(self) -> Counter[str]:
        return merged(self.stored[part] for part in self.layout.part_ids)


def test_split_increments_separates_cities():
    delta = Counter({"total": 2, "by_country.VN": 2, "by_city.VN|Huế": 1, "by_city.VN|Hà Nội": 1})

    main, split = split_increments(delta)

    assert main == Counter({"total": 2, "by_country.VN": 2})
    assert split == {"by_city": Counter({"VN|Huế": 1, "VN|Hà Nội": 1})}


def test_split_increments_city_named_like_field_kept_whole():
    main, split = split_increments({"by_city.VN|by_city.x": 1})

    assert main == Counter()
    assert split == {"by_city": Counter({"VN|by_city.x": 1})}


def test_bucket_of_stable_and_splits_when_doubled():
    names = [city_key("KE", f"Town {n}") for n in range(500)]

    assert bucket_of("VN|Đà Nẵng", 1) == 0
    assert bucket_of("VN|Đà Nẵng", 64) == bucket_of("VN|Đà Nẵng", 64)
    assert all(bucket_of(name, 64) % 32 == bucket_of(name, 32) for name in names)
    assert {bucket_of(name, 8) for name in names} == set(range(8))


def test_partition_keeps_every_counter_within_limit():
    counters = cities(10_000)

    parts = partition(counters, limit=1000)

    assert all(0 < len(part) <= 1000 for part in parts)
    assert merged(parts) == counters
    assert len(parts) == 16  # 10,000 / 1,000 rounded up to a power of two, hash slack included


def test_partition_small_one_part_and_zero_counters_left_out():
    assert partition(Counter({"VN|Huế": 2, "VN|Vinh": 0})) == [{"VN|Huế": 2}]
    assert partition(Counter()) == []


def test_partition_deterministic():
    counters = cities(5000)

    assert partition(counters, limit=500) == partition(dict(reversed(counters.items())), limit=500)


def test_part_of_longest_names_far_below_document_limit():
    # 120 characters of 4 UTF-8 bytes each, the longest city a response may carry.
    longest = Counter(
        {city_key("VN", f"{n:06d}" + "\U0002070e" * 114): 1_000_000 for n in range(PART_ENTRIES)}
    )

    size = len(bson.encode({"_id": "x" * 100, "counts": partition(longest)[0]}))

    assert size < MONGODB_LIMIT // 8


def test_million_cities_parts_far_below_document_limit():
    parts = partition(cities(1_000_000))

    largest = max(parts, key=len)
    assert len(bson.encode({"counts": largest})) < MONGODB_LIMIT // 32
    assert len(parts) <= 512


def test_decide_first_batch_compacts():
    assert decide(Layout(), cities(10)) == Step("compact", ())


def test_decide_small_batch_appends_to_large_buckets():
    layout = Layout("gen", ("b0", "b1"), ("d0",), bucket_entries=5000, delta_entries=100)

    assert decide(layout, cities(50)) == Step("append")


def test_decide_deltas_as_large_as_half_the_buckets_compact():
    layout = Layout("gen", ("b0",), ("d0",), bucket_entries=10_000, delta_entries=4900)

    assert decide(layout, cities(99)) == Step("append")
    assert decide(layout, cities(100)) == Step("compact", ("b0", "d0"))


def test_decide_small_field_gathers_deltas_before_compacting():
    layout = Layout("gen", ("b0",), ("d0",), bucket_entries=50, delta_entries=40)

    assert decide(layout, cities(40)) == Step("append")
    assert decide(layout, cities(COMPACT_MIN - 40)) == Step("compact", ("b0", "d0"))


def test_decide_too_many_deltas_merged():
    deltas = tuple(f"d{n}" for n in range(MAX_DELTAS))
    layout = Layout("gen", ("b0",), deltas, bucket_entries=100_000, delta_entries=160)

    assert decide(layout, cities(10)) == Step("merge_deltas", deltas)


def test_decide_forced_compacts():
    layout = Layout("gen", ("b0",), bucket_entries=100_000)

    assert decide(layout, cities(1), forced=True) == Step("compact", ("b0",))


def test_layout_stored_round_trip():
    layout = Layout("gen-1", ("b0", "b1"), ("d0",), bucket_entries=7, delta_entries=2)

    assert Layout.from_stored(layout.stored()) == layout
    assert Layout.from_stored(None) == Layout()


def test_parts_exact_over_100k_distinct_cities_and_bounded():
    parts = Parts()
    expected: Counter[str] = Counter()
    kinds = Counter[str]()
    for first in range(0, 100_000, 2000):
        batch = cities(2000, first)
        kinds[parts.add(batch).kind] += 1
        expected.update(batch)
        if first % 20_000 == 0:
            assert parts.total() == expected
        assert len(parts.layout.deltas) <= MAX_DELTAS
        assert all(len(parts.stored[p]) <= PART_ENTRIES for p in parts.layout.part_ids)
    # Doubling: each counter is rewritten a few times on average, not once per batch.
    assert parts.written_counters < 5 * 100_000
    assert kinds["compact"] < 12
    assert parts.total() == expected


def test_parts_repeated_cities_exact_and_deltas_merged():
    rng = random.Random(7)
    parts = Parts()
    expected: Counter[str] = Counter()
    parts.add(cities(20_000))
    expected.update(cities(20_000))
    for _ in range(3 * MAX_DELTAS):
        batch = Counter(city_key("VN", f"City {rng.randrange(300)}") for _ in range(200))
        parts.add(batch)
        expected.update(batch)
    assert parts.total() == expected
    assert 0 < len(parts.layout.deltas) <= MAX_DELTAS
    assert parts.layout.bucket_entries == 20_000  # small batches never rewrote the buckets


def test_decide_merged_deltas_count_towards_compaction():
    layout = Layout("gen", ("b0",), ("d0",), bucket_entries=10_000, delta_entries=1000)

    assert decide(layout, cities(10)) == Step("append")
    assert decide(replace(layout, garbage_entries=3990), cities(10)) == Step(
        "compact", ("b0", "d0")
    )


def test_next_layout_merge_counts_merged_deltas_as_garbage():
    layout = Layout("gen-1", ("b0",), ("d0", "d1"), bucket_entries=1000, delta_entries=30)
    step = Step("merge_deltas", ("d0", "d1"))

    after = next_layout(step, layout, ["d2"], [{"VN|Huế": 3}], "ignored")

    assert after == Layout("gen-1", ("b0",), ("d2",), 1000, delta_entries=1, garbage_entries=30)


def test_next_layout_compact_new_generation():
    layout = Layout("gen-1", ("b0",), ("d0",), bucket_entries=10, delta_entries=9)

    after = next_layout(Step("compact", ("b0", "d0")), layout, ["b1"], [{"VN|Huế": 3}], "gen-2")

    assert after == Layout("gen-2", ("b1",), bucket_entries=1)
