"""services.notifier.reviews: which focal points a review keeps from being mailed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from services.notifier import consent, reviews
from services.notifier.records import FocalPoint
from shared.events import ResponseReview, SurveyResponse

AT = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


def review(status: str, order: int, review_id: str = "r1") -> ResponseReview:
    return ResponseReview(
        review_id=review_id,
        survey_id="cities-2024",
        response_id="generic:1",
        status=status,  # type: ignore[arg-type]
        reviewed_at=AT,
        order=order,
    )


def test_withholds_latest_rejection_or_retraction() -> None:
    assert reviews.withholds([reviews.noted(review("rejected", 5))])
    assert reviews.withholds([reviews.noted(review("retracted", 5))])
    assert not reviews.withholds([reviews.noted(review("approved", 5))])
    assert not reviews.withholds([reviews.noted(review("pending", 5))])
    assert not reviews.withholds([])


def test_withholds_latest_by_rank_whatever_the_order_noted() -> None:
    rejected, approved = (
        reviews.noted(review("rejected", 5, "a")),
        reviews.noted(review("approved", 9, "b")),
    )

    assert not reviews.withholds([rejected, approved])
    assert not reviews.withholds([approved, rejected])
    # Same order: the review id breaks the tie, as analytics breaks it.
    tie = reviews.noted(review("rejected", 9, "c"))
    assert reviews.withholds([approved, tie])


def test_on_arrival_status_counts_at_received_at(
    make_event: Callable[..., SurveyResponse],
) -> None:
    response = make_event(review="rejected", received_at=AT.isoformat())
    arrival = reviews.on_arrival(response)

    assert arrival is not None and arrival.identity == response.identity
    assert arrival.rank == (int(AT.timestamp()) * 1_000_000_000, "")
    before = reviews.noted(review("approved", int((AT - timedelta(1)).timestamp() * 1e9)))
    after = reviews.noted(review("approved", int((AT + timedelta(1)).timestamp() * 1e9)))
    assert reviews.withholds([before, arrival])
    assert not reviews.withholds([arrival, after])
    assert reviews.on_arrival(make_event()) is None  # says none: nothing noted


def test_receives_pilots_withheld_record_none_and_asked_nothing() -> None:
    record = FocalPoint("k1", email="an@example.org", consent=True, confirmed_at=AT)
    withheld = FocalPoint("k1", email="an@example.org", consent=True, withheld_at=AT)

    assert consent.receives_pilots(record)
    assert not consent.receives_pilots(
        FocalPoint("k1", consent=True, confirmed_at=AT, withheld_at=AT)
    )
    step, request = consent.confirmation_step(
        withheld,
        AT,
        latest=True,
        received_at=AT,
        ttl=timedelta(days=7),
        resend_after=timedelta(days=1),
    )
    assert (step, request) == (consent.Step.NOTHING, None)
