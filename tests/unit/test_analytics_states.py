"""services.analytics.states: what a response counts for through revisions and reviews."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from services.analytics.aggregates import OVERALL
from services.analytics.states import (
    Change,
    State,
    after_response,
    after_review,
    contribution,
    revision_state,
)
from shared.events import ResponseReview

KEY = "survey:cities-2024-priorities"


def review(status: str, order: int, review_id: str = "r") -> ResponseReview:
    return ResponseReview(
        review_id=review_id,
        survey_id="cities-2024-priorities",
        response_id="g:1",
        status=status,
        reviewed_at=datetime(2024, 6, 1, tzinfo=UTC),
        order=order,
    )


def moved(make_event, revision: int, country: str):
    return make_event(
        response_id="g:1",
        revision=revision,
        respondent={"type": "cso", "country": country, "city": "X"},
    )


def test_after_response_newer_revision_replaces_older_never_the_reverse(make_event):
    first = after_response(State("cities-2024-priorities"), moved(make_event, 1, "VN"))
    assert first is not None
    third = after_response(first, moved(make_event, 3, "TH"))
    assert third is not None and (third.revision, third.country) == (3, "TH")

    assert after_response(third, moved(make_event, 2, "LA")) is None  # late, older
    assert after_response(third, moved(make_event, 3, "LA")) is None  # the same revision again


def test_after_review_latest_order_wins_whatever_arrives_first(make_event):
    state = revision_state(moved(make_event, 1, "VN"))
    approved = after_review(state, review("approved", 20))
    assert approved is not None

    assert after_review(approved, review("rejected", 10)) is None  # an older review, late
    rejected = after_review(approved, review("rejected", 30))
    assert rejected is not None and rejected.status == "rejected"
    assert after_review(rejected, review("approved", 30, "s")).status == "approved"  # tie: id


def test_after_response_review_of_older_revision_ignored(make_event):
    state = revision_state(moved(make_event, 2, "VN"))
    late = moved(make_event, 1, "VN").model_copy(update={"review": "rejected"})

    assert after_response(state, late) is None


def test_contribution_by_status(make_event):
    state = revision_state(moved(make_event, 1, "VN"))
    pending = contribution(state, KEY)
    approved = contribution(State(**{**state.__dict__, "status": "approved"}), KEY)
    rejected = contribution(State(**{**state.__dict__, "status": "rejected"}), KEY)
    retracted = contribution(State(**{**state.__dict__, "status": "retracted"}), KEY)

    assert pending["total"] == 1 and pending["by_country.VN"] == 1
    assert "by_review.approved" not in pending
    assert approved["total"] == 1 and approved["by_review.approved"] == 1
    assert rejected == Counter({"by_review.rejected": 1})
    assert retracted == Counter()
    assert contribution(state, OVERALL)["surveys.cities-2024-priorities"] == 1
    assert contribution(State("cities-2024-priorities"), KEY) == Counter()  # review first


def test_change_delta_moves_a_count_between_countries(make_event):
    before = revision_state(moved(make_event, 1, "VN"))
    after = revision_state(moved(make_event, 2, "TH"))
    change = Change("s/g:1", 2, before, after, 0, 7)

    delta = change.delta(KEY)

    assert delta["by_country.VN"] == -1 and delta["by_country.TH"] == 1
    assert "total" not in delta  # still one response
    assert change.delta(OVERALL)["by_country.TH"] == 1


def test_changes_telescope_to_the_newest_state(make_event):
    states = [
        None,
        revision_state(moved(make_event, 1, "VN")),
        revision_state(moved(make_event, 2, "TH")),
    ]
    rejected = after_review(states[-1], review("rejected", 5))
    approved = after_review(rejected, review("approved", 6))
    states += [rejected, approved]
    total: Counter[str] = Counter()
    for seq in range(1, len(states)):
        total.update(Change("s/g:1", seq, states[seq - 1], states[seq], 0, seq).delta(KEY))

    assert +total == contribution(approved, KEY)
    assert all(n >= 0 for n in total.values())


def test_state_document_round_trip(make_event):
    state = after_review(revision_state(moved(make_event, 4, "VN")), review("approved", 9, "x"))

    assert State.from_document(state.document()) == state
