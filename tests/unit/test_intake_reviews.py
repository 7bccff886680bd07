"""services.intake.reviews: review events, their order, and bulk review files."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.intake.reviews import ReviewClock, new_review, reviews_from_csv


def test_next_order_strictly_increases_within_a_process():
    clock = ReviewClock()
    orders = [clock.next() for _ in range(1000)]

    assert orders == sorted(set(orders))


def test_new_review_keyed_by_identity_with_its_order():
    review = new_review("cities-2024-priorities", "generic:r1", "approved", "ok", ReviewClock())

    assert review.identity == "cities-2024-priorities/generic:r1"
    assert review.rank == (review.order, review.review_id)
    assert review.reviewed_at.year >= 2024


@pytest.mark.parametrize(
    ("survey_id", "response_id", "status"),
    [
        ("cities-2024-priorities", "generic:r1", "valid"),
        ("X", "generic:r1", "approved"),
        ("cities-2024-priorities", "a b", "approved"),
    ],
)
def test_new_review_bad_field_refused(survey_id, response_id, status):
    with pytest.raises(ValidationError):
        new_review(survey_id, response_id, status, "", ReviewClock())


def test_reviews_from_csv_each_line_a_review_or_its_reason():
    text = (
        "\ufeffsurvey_id,response_id,status,note\n"
        "cities-2024-priorities,generic:r1,Approved,checked\n"
        "cities-2024-priorities,generic:r2,spam,\n"
        "cities-2024-priorities,generic:r3,retracted,asked to withdraw\n"
    )
    lines = reviews_from_csv(text, ReviewClock())

    assert [line.line for line in lines] == [2, 3, 4]
    first, bad, retracted = lines
    assert first.review is not None and (first.review.status, first.review.note) == (
        "approved",
        "checked",
    )
    assert bad.review is None and bad.error is not None and "status" in bad.error
    assert retracted.review is not None and retracted.review.status == "retracted"
    assert first.review.order < retracted.review.order  # file order is review order


def test_reviews_from_csv_missing_column_refuses_the_file():
    with pytest.raises(ValueError, match="status"):
        reviews_from_csv("survey_id,response_id\nx,y\n", ReviewClock())
