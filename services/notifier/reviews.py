"""Which focal points a review keeps from being mailed: pure rules, no I/O.

A focal point is registered from one response (its latest). When the latest review of that
response rejects or retracts it, nobody is mailed because of it: the record is `withheld` until a
later review approves it again (or a later response of theirs replaces it). Reviews are ordered
as analytics orders them (`shared.events.ResponseReview.rank`); the status a response carries on
arrival (Kobo's validation status) counts as a review taken at its `received_at`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from shared.events import ResponseReview, SurveyResponse

# The statuses that keep a response out of every count, and its focal point out of the mail.
WITHHOLDING = frozenset({"rejected", "retracted"})


@dataclass(frozen=True)
class NotedReview:
    """One review of one response as the registry keeps it: `key` is unique per review (a
    redelivered review is the same one)."""

    key: str
    identity: str
    status: str
    rank: tuple[int, str]


def noted(review: ResponseReview) -> NotedReview:
    """An operator's review or retraction, as noted."""
    return NotedReview(review.review_id, review.identity, review.status, review.rank)


def on_arrival(response: SurveyResponse) -> NotedReview | None:
    """The review a response carries on arrival, as noted (None when it says none)."""
    if response.review is None:
        return None
    rank = (int(response.received_at.timestamp()) * 1_000_000_000, "")
    key = f"arrival:{response.identity}:{response.revision}"
    return NotedReview(key, response.identity, response.review, rank)


def withholds(reviews: Iterable[NotedReview]) -> bool:
    """Whether the latest of these reviews of one response rejects or retracts it."""
    latest = max(reviews, key=lambda review: (review.rank, review.key), default=None)
    return latest is not None and latest.status in WITHHOLDING
