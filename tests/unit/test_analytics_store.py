"""The pure parts of services.analytics.store: raw documents, queries, version ids."""

from __future__ import annotations

from pymongo import AsyncMongoClient

from services.analytics.documents import (
    from_raw_document,
    layouts,
    main_counters,
    part_ids,
    probe_document,
    raw_document,
    responses_query,
    version_id,
)
from services.analytics.erasure import due_hours, spent_hours
from services.analytics.parts import Layout
from services.analytics.store import (
    AGGREGATE_PARTS,
    AGGREGATES,
    AnalyticsStore,
    OffsetRun,
    Positioned,
    RawInsert,
    first_change,
    first_changes,
    first_of,
    generation_collection,
    generation_of,
    holds,
    key_hash,
    offset_runs,
    personal_hours,
    placed,
    runs_fields,
    runs_of,
)


def test_raw_document_keeps_no_personal_data_and_consent(make_event):
    document = raw_document(Positioned(make_event(), 2, 41))

    assert "focal_point" not in document
    assert document["has_focal_point"] is True
    assert document["consenting_focal_point"] is True
    assert document["position"] == {"partition": 2, "offset": 41}


def test_raw_document_tracked_holds_its_origin_and_reads_back_without(make_event):
    event = make_event()

    tracked = raw_document(Positioned(event, 2, 41), tracked=True)

    assert tracked["origin"] == "2:41"
    assert "origin" not in raw_document(Positioned(event, 2, 41))
    assert from_raw_document(tracked) == event.model_copy(update={"focal_point": None})


def test_probe_document_collides_on_origin_only_and_reads_as_placeholder():
    probe = probe_document("t0k3n", 3, {"partition": 2, "offset": 41})

    assert probe["origin"] == "2:41"
    assert probe["_id"] == "~probe:t0k3n:3"
    assert probe["placeholder"] is True and probe["tracked"] is True
    assert "first" not in probe  # never read as the start of a chain


def test_raw_document_withdrawn_consent_not_consenting(make_event):
    event = make_event(focal_point={"consent": False})

    document = raw_document(Positioned(event, 0, 0))

    assert (document["has_focal_point"], document["consenting_focal_point"]) == (True, False)


def test_from_raw_document_round_trip_without_focal_point(make_event):
    event = make_event()

    back = from_raw_document(raw_document(Positioned(event, 0, 0)))

    assert back == event.model_copy(update={"focal_point": None})


def test_raw_document_identity_is_survey_and_response_id(make_event):
    event = make_event(response_id="generic:r-1", survey_id="cities-2024-capacity")

    document = raw_document(Positioned(event, 0, 0))

    assert (document["_id"], document["response_id"]) == (
        "cities-2024-capacity/generic:r-1",
        "generic:r-1",
    )


def test_from_raw_document_stored_under_response_id_still_read(make_event):
    event = make_event()
    document = raw_document(Positioned(event, 0, 0))
    document["_id"] = document.pop("response_id")  # as stored before the identity held a survey

    assert from_raw_document(document).response_id == event.response_id


def test_responses_query_only_given_filters():
    assert responses_query() == {}
    assert responses_query("s1", "VN", "cso") == {
        "survey_id": "s1",
        "respondent.country": "VN",
        "respondent.type": "cso",
    }
    assert responses_query(country="KE") == {"respondent.country": "KE"}


def test_version_id_sorts_by_version():
    ids = [version_id("all", version) for version in (9, 10, 100)]

    assert ids == sorted(ids)
    assert ids[0] == "all#000000000009"


def test_generation_collection_names_its_document_and_version():
    name = generation_collection("survey:cities-2024-priorities", "by_city", 12, "ab12cd34")

    assert name.startswith(f"{AGGREGATE_PARTS}-")
    assert generation_of(name) == (key_hash("survey:cities-2024-priorities"), 12)
    assert key_hash("all") != key_hash("survey:cities-2024-priorities")


def test_generation_of_other_collections_none():
    assert generation_of(AGGREGATES) is None
    assert generation_of(f"{AGGREGATE_PARTS}-x") is None
    assert generation_of("analytics_responses-a-b-c-d") is None


def test_layouts_and_part_ids_of_a_version():
    layout = Layout("gen-1", ("b0", "b1"), ("d0",), bucket_entries=3, delta_entries=1)
    document = {"total": 4, "parts": {"by_city": layout.stored()}, "garbage": ["gen-0"]}

    assert layouts(document) == {"by_city": layout}
    assert part_ids(document) == {"b0", "b1", "d0"}
    assert layouts(None) == {"by_city": Layout()}


def test_main_counters_leave_out_cities_held_inline():
    document = {"_id": "all", "total": 2, "by_city": {"VN|Huế": 2}, "parts": {}, "garbage": []}

    assert main_counters(document) == {"total": 2}


def test_first_of_keeps_whether_the_focal_point_consented(make_event) -> None:
    # The raw document has no focal point, only the two booleans: the state takes them.
    consenting = first_of(raw_document(Positioned(make_event(), 0, 3), tracked=True))
    without = first_of(raw_document(Positioned(make_event(focal_point=None), 0, 4), tracked=True))

    assert consenting.after.consenting and consenting.after.has_focal_point
    assert not without.after.consenting and not without.after.has_focal_point


def test_first_changes_of_revisions_1_only_the_last_position_of_each(make_event) -> None:
    new = make_event(response_id="r1")
    revised = make_event(response_id="r2", revision=2)

    firsts = first_changes(
        [Positioned(new, 0, 3), Positioned(revised, 1, 4), Positioned(new, 2, 9)]
    )

    assert firsts == {new.identity: first_change(new, 2, 9)}


def unreachable_store() -> AnalyticsStore:
    """A store whose database answers nothing: any read or write fails within 0.1 s."""
    client: AsyncMongoClient[dict] = AsyncMongoClient(
        "mongodb://127.0.0.1:9", connect=False, serverSelectionTimeoutMS=100
    )
    return AnalyticsStore(client["unreachable"])


async def test_track_new_responses_takes_the_entries_worked_out_ahead_without_io(
    make_event,
) -> None:
    new = [Positioned(make_event(response_id=f"r{n}"), n % 2, n) for n in range(4)]
    firsts = first_changes(new)

    changes = await unreachable_store().track(new, frozenset(firsts), firsts)

    assert len(changes) == 4
    assert all(change is firsts[change.identity] for change in changes)


async def test_track_entry_worked_out_at_another_position_worked_out_again(make_event) -> None:
    event = make_event(response_id="r1")
    elsewhere = first_changes([Positioned(event, 0, 99)])

    changes = await unreachable_store().track(
        [Positioned(event, 0, 5)], frozenset({event.identity}), elsewhere
    )

    assert changes == [first_change(event, 0, 5)]


def test_raw_insert_after_shifts_the_later_chunk():
    first = RawInsert({1: "too large"}, frozenset({0}))
    second = RawInsert({0: "bad key"}, frozenset({2}))

    joined = first.after(0, RawInsert({}, frozenset())).after(4, second)

    assert joined.refused == {1: "too large", 4: "bad key"}
    assert joined.taken == {0, 6}


def test_offset_runs_join_consecutive_offsets_of_one_partition():
    positions = [(1, 7), (0, 3), (0, 4), (0, 6), (1, 8), (0, 5), (0, 9), (1, 8)]

    assert offset_runs(positions) == [
        OffsetRun(0, 3, 6),
        OffsetRun(0, 9, 9),
        OffsetRun(1, 7, 8),
    ]


def test_placed_only_ids_at_a_position_the_runs_hold():
    runs = [OffsetRun(0, 3, 6), OffsetRun(2, 10, 10)]
    wanted = {
        "inside": [{"partition": 0, "offset": 5}],
        "edge": [{"partition": 2, "offset": 10}],
        "other partition": [{"partition": 1, "offset": 5}],
        "after": [{"partition": 0, "offset": 7}],
        "second position": [{"partition": 0, "offset": 1}, {"partition": 0, "offset": 3}],
    }

    assert placed(wanted, runs) == {
        "inside": {"partition": 0, "offset": 5},
        "edge": {"partition": 2, "offset": 10},
        "second position": {"partition": 0, "offset": 3},
    }


def test_runs_of_reads_back_runs_fields():
    runs = [OffsetRun(0, 3, 6), OffsetRun(2, 10, 10)]

    assert runs_of({"_id": "r", **runs_fields(runs)}) == runs


def test_holds_only_positions_inside_a_run_of_their_partition():
    runs = [OffsetRun(0, 3, 6), OffsetRun(2, 10, 10)]

    assert holds(runs, {"partition": 0, "offset": 3})
    assert holds(runs, {"partition": 2, "offset": 10})
    assert not holds(runs, {"partition": 1, "offset": 4})
    assert not holds(runs, {"partition": 0, "offset": 7})
    assert not holds([], {"partition": 0, "offset": 3})


def test_personal_hours_only_of_responses_holding_personal_data():
    documents = [
        {"received_at": "2024-05-02T10:31:00Z", "personal": True},
        {"received_at": "2024-05-02T11:02:00Z", "personal": False},
        {"received_at": "2024-05-02T10:59:59Z", "personal": True},
    ]

    assert personal_hours(documents) == {"2024-05-02T10"}


def test_due_hours_began_before_the_cutoff():
    marks = ["2024-05-02T09", "2024-05-02T10", "2024-05-02T11"]

    assert due_hours(marks, "2024-05-02T10:30:00Z") == ["2024-05-02T09", "2024-05-02T10"]


def test_spent_hours_ended_an_hour_before_the_cutoff():
    marks = ["2024-05-02T08", "2024-05-02T09", "2024-05-02T10"]

    assert spent_hours(marks, "2024-05-02T10:30:00Z") == ["2024-05-02T08"]
