"""Pure: what one response counts for as revisions and reviews arrive, and what each change of
it adds to the aggregates. No I/O; `store.py` keeps the states.

A response's *state* is the newest revision seen of it (its counter paths, its cell, its share
of the partner ranking) and its latest review (status and rank). Every message that changes a
state (a newer revision, a later review) becomes a *change*: the state before and the state
after, stored once as an immutable entry of the response's chain (`store.py`: the entry's
unique `_id` is the compare-and-set, as the aggregate versions are), tagged with the Kafka
position of the message that caused it. The first entry of most chains is the raw revision 1
itself, stored first under the response's identity: its change (nothing before, that revision
after) is computed from it, so a new response costs no write beyond its raw insert. What a
change adds to a document is the contribution of the state after minus that of the state
before; the aggregate documents apply it by that position under their watermarks, exactly once,
like any counted response.

So a late older revision changes nothing (the state already holds a newer one), a review older
than the latest one changes nothing, and a replay of a message finds the change it caused
already in the chain and applies that very change (or nothing, if its position is below the
watermarks). Telescoped, the changes of a response add up to the contribution of its newest
state; in between (a change applied before an earlier one whose consumer died) a counter may
briefly be off by the earlier one, until its batch is read again.

Contributions: a response counts in full while `pending` or `approved` (approved ones also add
`by_review.approved`); a `rejected` one adds only `by_review.rejected`; a `retracted` one, or a
review of a response not seen yet, nothing. So `total` counts the responses that are not
rejected, and the pending ones are `total - by_review.approved`.

Reviews come from `survey.reviews.v1`; their partitions are counted as partitions
`REVIEW_PARTITIONS_FROM + n` in the watermarks, beside those of the responses topic.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from services.analytics.aggregates import OVERALL, response_paths, survey_key
from shared.events import ResponseReview, SurveyResponse

REVIEW_PARTITIONS_FROM = 1000
NO_RANK: tuple[int, str] = (-1, "")
COUNTED = ("pending", "approved")


@dataclass(frozen=True)
class State:
    """What is known of one response: its newest revision (0: none seen yet) and latest review."""

    survey_id: str
    revision: int = 0
    status: str = "pending"
    rank: tuple[int, str] = NO_RANK
    paths: tuple[str, ...] = ()
    country: str = ""
    respondent_type: str = ""
    city: str = ""
    organization: str | None = None
    consenting: bool = False
    codes: tuple[str, ...] = ()
    has_focal_point: bool = False

    @property
    def counted(self) -> bool:
        """Whether the response counts in full (seen, and neither rejected nor retracted)."""
        return self.revision > 0 and self.status in COUNTED

    def document(self) -> dict[str, Any]:
        """As stored in a chain entry."""
        stored = asdict(self)
        stored["rank"] = list(self.rank)
        stored["paths"] = list(self.paths)
        stored["codes"] = list(self.codes)
        return stored

    @classmethod
    def from_document(cls, stored: Mapping[str, Any]) -> State:
        """The inverse of `document`."""
        order, review_id = stored.get("rank", NO_RANK)
        return cls(
            survey_id=str(stored["survey_id"]),
            revision=int(stored.get("revision", 0)),
            status=str(stored.get("status", "pending")),
            rank=(int(order), str(review_id)),
            paths=tuple(stored.get("paths", ())),
            country=str(stored.get("country", "")),
            respondent_type=str(stored.get("respondent_type", "")),
            city=str(stored.get("city", "")),
            organization=stored.get("organization"),
            consenting=bool(stored.get("consenting", False)),
            codes=tuple(stored.get("codes", ())),
            has_focal_point=bool(stored.get("has_focal_point", False)),
        )


def arrival_rank(response: SurveyResponse) -> tuple[int, str]:
    """The rank of the review a response carries on arrival: taken at its `received_at`."""
    return (int(response.received_at.timestamp()) * 1_000_000_000, "")


def revision_state(response: SurveyResponse, base: State | None = None) -> State:
    """`base` (or a fresh state) holding this revision's content."""
    who = response.respondent
    # One constructor call: a new response (most of them) goes through here once.
    return State(
        survey_id=response.survey_id,
        revision=response.revision,
        status=base.status if base else "pending",
        rank=base.rank if base else NO_RANK,
        paths=tuple(response_paths(response)),
        country=who.country,
        respondent_type=who.type,
        city=who.city,
        organization=who.organization,
        consenting=response.consenting_focal_point is not None,
        codes=(*response.capacity_needs, *response.collaboration_interests),
        has_focal_point=response.focal_point is not None,
    )


def legacy_state(response: SurveyResponse) -> State:
    """The state of a response stored before states existed: its revision, pending."""
    return revision_state(response)


def after_response(state: State, response: SurveyResponse) -> State | None:
    """The state after a revision arrives; None when it changes nothing (the same or an older
    revision: a late older revision never replaces a newer one, nor does the review it carries
    count)."""
    if response.revision <= state.revision:
        return None
    after = revision_state(response, state)
    if response.review is not None and arrival_rank(response) > state.rank:
        after = replace(after, status=response.review, rank=arrival_rank(response))
    return after


def after_review(state: State, review: ResponseReview) -> State | None:
    """The state after a review; None when a later review was seen already."""
    if review.rank <= state.rank:
        return None
    return replace(state, status=review.status, rank=review.rank)


def contribution(state: State | None, key: str) -> Counter[str]:
    """What a state adds to one aggregate document (its survey's, or the overall one)."""
    counters: Counter[str] = Counter()
    contribute(counters, state, key)
    return counters


def contribute(counters: Counter[str], state: State | None, key: str) -> None:
    """Add `contribution(state, key)` to `counters`."""
    if state is None or state.revision == 0:
        return
    if state.status == "rejected":
        counters["by_review.rejected"] += 1
    elif state.counted:
        counters.update(state.paths)
        if state.status == "approved":
            counters["by_review.approved"] += 1
        if key == OVERALL:
            counters[f"surveys.{state.survey_id}"] += 1


def difference(after: Counter[str], before: Counter[str]) -> Counter[str]:
    """`after - before`, negative counts kept, zeros left out."""
    delta = Counter(after)
    delta.subtract(before)
    return Counter({path: n for path, n in delta.items() if n})


@dataclass(frozen=True)
class Change:
    """One change of a response's state, at the position of the message that caused it."""

    identity: str
    seq: int
    before: State | None
    after: State
    partition: int
    offset: int
    _deltas: dict[str, Counter[str]] = field(default_factory=dict, compare=False, repr=False)

    @property
    def survey_id(self) -> str:
        """The response's survey."""
        return self.after.survey_id

    @property
    def position(self) -> dict[str, int]:
        """Where the message that caused it sits (review partitions shifted)."""
        return {"partition": self.partition, "offset": self.offset}

    def count_into(self, counters: Counter[str], key: str) -> None:
        """Add `delta(key)` to `counters`."""
        if self.before is None:  # a first change (most of them): no intermediate counter
            contribute(counters, self.after, key)
        else:
            counters.update(self.delta(key))

    def delta(self, key: str) -> Counter[str]:
        """What it adds to one aggregate document."""
        if key not in self._deltas:
            after = contribution(self.after, key)
            # A first change (most of them) adds its state's contribution as it is.
            self._deltas[key] = (
                after if self.before is None else difference(after, contribution(self.before, key))
            )
        return self._deltas[key]


def review_partition(partition: int) -> int:
    """A partition of the reviews topic as counted in the watermarks."""
    return REVIEW_PARTITIONS_FROM + partition


def keys_of(survey_id: str) -> tuple[str, str]:
    """The aggregate documents a change of a response of `survey_id` touches."""
    return (survey_key(survey_id), OVERALL)


def newest_states(changes: Iterable[Change]) -> dict[str, Change]:
    """The newest change (by chain order) of each response among `changes`."""
    newest: dict[str, Change] = {}
    for change in changes:
        if change.identity not in newest or change.seq > newest[change.identity].seq:
            newest[change.identity] = change
    return newest
