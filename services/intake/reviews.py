"""Reviews and retractions of responses, as events. Pure: no I/O.

An operator's review (`pending`, `approved`, `rejected`) or retraction becomes a
`ResponseReview` stamped with an `order`: nanoseconds since the epoch on the intake's clock,
strictly increasing within one process. Consumers keep, per response, the review with the
highest (`order`, `review_id`), so the latest review wins whatever order the events arrive in.
Across intake replicas the order is the replicas' clocks: two reviews of one response taken on
two replicas within their clock difference may be ordered by it (NTP keeps that to
milliseconds, far below how fast a person reviews one response twice).

Bulk reviews come from a CSV file with a header `survey_id,response_id,status[,note]`, one
response per line; `status` may also be `retracted` there.
"""

from __future__ import annotations

import csv
import io
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.events import ResponseReview

MAX_NOTE = 2000
CSV_COLUMNS = ("survey_id", "response_id", "status")


class ReviewRequest(BaseModel):
    """The body of `POST /v1/responses/{survey_id}/{response_id}/review`."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["pending", "approved", "rejected"]
    note: str = Field(default="", max_length=MAX_NOTE)


class ReviewClock:
    """Orders for reviews: the wall clock in nanoseconds, never the same or lower twice."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        """The next order: now, or one above the previous one when the clock did not move on."""
        with self._lock:
            self._last = max(self._last + 1, time.time_ns())
            return self._last


def new_review(
    survey_id: str, response_id: str, status: str, note: str, clock: ReviewClock
) -> ResponseReview:
    """A review event (`retracted` for a retraction); `ValidationError` names a bad field."""
    order = clock.next()
    return ResponseReview.model_validate(
        {
            "review_id": uuid.uuid4().hex,
            "survey_id": survey_id,
            "response_id": response_id,
            "status": status,
            "note": note,
            "reviewed_at": datetime.fromtimestamp(order / 1e9, UTC),
            "order": order,
        }
    )


@dataclass(frozen=True)
class CsvReview:
    """One line of a bulk review file: where it is, and the review or why it is refused."""

    line: int
    review: ResponseReview | None
    error: str | None = None


def reviews_from_csv(text: str, clock: ReviewClock) -> list[CsvReview]:
    """Every line of a bulk review file as a review, or the reason it is refused (a missing
    column refuses the file: `ValueError`)."""
    rows = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    missing = [name for name in CSV_COLUMNS if name not in (rows.fieldnames or ())]
    if missing:
        raise ValueError(f"the CSV file has no column {', '.join(missing)}")
    found: list[CsvReview] = []
    for number, row in enumerate(rows, start=2):
        fields: dict[str, Any] = {name: (row.get(name) or "").strip() for name in CSV_COLUMNS}
        try:
            review = new_review(
                fields["survey_id"],
                fields["response_id"],
                fields["status"].lower(),
                (row.get("note") or "").strip(),
                clock,
            )
        except ValidationError as exc:
            reasons = "; ".join(
                f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
                for error in exc.errors(include_url=False)
            )
            found.append(CsvReview(number, None, reasons))
            continue
        found.append(CsvReview(number, review))
    return found
