"""The shapes of analytics' stored documents, without I/O: the raw document kept of each
response (and the filter over them), the ids of aggregate versions and their parts, and what a
version document holds. `store.py` reads and writes them."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from services.analytics.aggregates import Positioned
from services.analytics.audit import PARTS, counters_of
from services.analytics.parts import SPLIT_FIELDS, Layout
from shared.events import TOLERANT, SurveyResponse
from shared.mongo import Document
from shared.personal import EmailKeys


def version_id(key: str, version: int) -> str:
    """The `_id` of one version of an aggregate document; sorts by version."""
    return f"{key}#{version:012d}"


def part_id(key: str, field: str, version: int, kind: str, index: int, token: str) -> str:
    """The `_id` of one part written for one version; `token` differs between writers, so two
    writers of the same version never collide on their parts."""
    return f"{key}/{field}/{version:012d}/{kind}{index:05d}/{token}"


def responses_query(
    survey_id: str | None = None, country: str | None = None, respondent_type: str | None = None
) -> Document:
    """The filter of the stored responses of a survey, country and respondent type (each
    optional)."""
    query: Document = {}
    if survey_id is not None:
        query["survey_id"] = survey_id
    if country is not None:
        query["respondent.country"] = country
    if respondent_type is not None:
        query["respondent.type"] = respondent_type
    return query


TRACKED = "tracked"
# A revision 1 stored under the response's identity, by the first message about it: it is
# itself the first entry of the response's chain of states (`store.py`), written by no other
# write than its own insert.
FIRST = "first"
# Stored under a response's identity by a review or a later revision that came before any
# revision 1: it claims the identity, so that the response's chain starts in the states
# collection, and a revision 1 arriving later is stored beside it (`displaced_id`).
PLACEHOLDER = "placeholder"
# The position a tracked raw document was stored from, as `<partition>:<offset>`, under a unique
# index: the one fact about a raw insert that the insert itself writes, so a batch read again
# after a crash during its insert can ask the database, by an insert that collides on it,
# whether what it finds stored is its own (`store.AnalyticsStore._probe`). The only other way
# to know is to read the stored responses, a scan on FerretDB.
ORIGIN = "origin"
# What a raw document holds beside the response's own fields.
STORED_ONLY = ("_id", "position", TRACKED, FIRST, ORIGIN)


def raw_id(response: SurveyResponse) -> str:
    """The `_id` of the stored revision of a response (`revision_id`)."""
    return revision_id(response.identity, response.revision)


def revision_id(identity: str, revision: int) -> str:
    """The `_id` of one revision of a stored response: its identity for revision 1 (as before
    revisions existed), `<identity>#r<n>` for the others."""
    return identity if revision == 1 else f"{identity}#r{revision}"


def displaced_id(identity: str) -> str:
    """The `_id` of a revision 1 that found a placeholder under its identity."""
    return f"{identity}#r1"


def origin_of(position: Mapping[str, int]) -> str:
    """The `ORIGIN` of a raw document stored from `position`."""
    return f"{position['partition']}:{position['offset']}"


def probe_document(token: str, number: int, position: Mapping[str, int]) -> Document:
    """A document whose insert collides on `ORIGIN` exactly when a raw document was stored from
    `position`. Should it be stored (nothing was), it is shaped as a placeholder nothing
    claims, which every reader of the stored responses passes over, until it is deleted."""
    return {
        "_id": f"~probe:{token}:{number}",
        TRACKED: True,
        PLACEHOLDER: True,
        ORIGIN: origin_of(position),
    }


def placeholder_document(identity: str, survey_id: str) -> Document:
    """The placeholder claiming `identity` (`PLACEHOLDER`)."""
    return {"_id": identity, "survey_id": survey_id, TRACKED: True, PLACEHOLDER: True}


def raw_document(
    item: Positioned,
    keys: EmailKeys | None = None,
    tracked: bool = False,
    *,
    personal_after: datetime | None = None,
) -> Document:
    """What is kept of a response: no focal-point name or email ever reaches analytics' data.

    With `keys`, the keyed hash of the focal point's address (`focal_point_key`) lets an erasure
    request find the response's free answers (`services.analytics.erasure`); `personal`
    marks a response that holds either and that the retention sweep has not anonymised yet (a
    response with neither is never swept: nothing in it is about a person). A response received
    before `personal_after` (a campaign imported or replayed past its retention) is stored
    anonymised at once: updating it later would cost the local MongoDB-wire server a collection
    scan per response. `tracked`: counted through its state's changes (`states.py`), not by its
    position alone."""
    document = item.response.model_dump(mode="json", exclude={"focal_point"})
    focal_point = item.response.focal_point
    if personal_after is not None and item.response.received_at < personal_after:
        document["answers"] = {}
        document["anonymised_at"] = personal_after
    elif keys is not None and focal_point is not None:
        document["focal_point_key"] = keys.key(str(focal_point.email))
    document["personal"] = "focal_point_key" in document or bool(document.get("answers"))
    document["_id"] = raw_id(item.response)
    if tracked:
        document[TRACKED] = True
        if item.response.revision == 1:
            document[FIRST] = True
        document[ORIGIN] = origin_of(item.position)
    document["has_focal_point"] = item.response.focal_point is not None
    document["consenting_focal_point"] = item.response.consenting_focal_point is not None
    document["position"] = item.position
    return document


def from_raw_document(document: Document) -> SurveyResponse:
    """The response back from its raw document, for recounts."""
    fields = {key: value for key, value in document.items() if key not in STORED_ONLY}
    # Documents stored before the identity held the survey kept the response id as `_id`.
    # Read as the consumer read it: codes newer than this taxonomy stay counted under their code.
    return SurveyResponse.model_validate(
        {"response_id": document["_id"], **fields}, context=TOLERANT
    )


def positioned_from_raw(document: Document) -> Positioned:
    """The response and the position that counts for it, from its raw document."""
    position = document["position"]
    return Positioned(from_raw_document(document), position["partition"], position["offset"])


def layouts(document: Mapping[str, Any] | None) -> dict[str, Layout]:
    """The layout of each split field in a version document (empty layouts when it has none)."""
    stored = (document or {}).get(PARTS, {})
    return {field: Layout.from_stored(stored.get(field)) for field in SPLIT_FIELDS}


def part_ids(document: Mapping[str, Any] | None) -> set[str]:
    """Every part a version document names."""
    return {part for layout in layouts(document).values() for part in layout.part_ids}


def main_counters(document: Mapping[str, Any] | None) -> dict[str, Any]:
    """The counters of a version document without the split fields (which a document of the
    format before parts still held inline)."""
    counters = counters_of(document)
    for field in SPLIT_FIELDS:
        counters.pop(field, None)
    return counters
