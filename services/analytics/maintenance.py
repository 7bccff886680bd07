"""`rebuild` and `verify`: the running aggregates against a recount of the raw responses.

verify
    Reads every aggregate document first, then the raw responses, and recounts each document
    within its own watermarks (see `audit.py`). Safe at any time, also while consumers run: a
    response stored after the documents were read sits above their watermarks and is left out.

rebuild
    Recounts every document from the raw responses up to one boundary, the watermarks of the
    overall document, and gives every document exactly those watermarks. Everything at or below
    the boundary has been stored and applied (a batch is stored before it is applied, and the
    overall document is applied last); every counting response above it has not been committed
    to Kafka yet, so the consumers count it when they read it again. Run it with the consumers
    of this database stopped (`kubectl scale --replicas=0`, or `make down` locally): a batch
    applied between its read and its write would be overwritten. It is idempotent. When the
    aggregate documents are lost altogether, reset the consumer group to the earliest offsets
    instead: a replay recounts exactly (the stored positions decide what counts).

    Revisions and reviews are counted as the consumers count them: the changes of the
    responses' states (`states.py`), each by the position of the message that caused it, and
    the responses stored before states existed by their own position.

    The high-cardinality counters (`by_city`) belong to their document's versions (see
    `parts.py`), so they follow the same boundary: each rebuilt version names freshly written
    parts. The rebuild then deletes the parts no version names (left by writers that died).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from services.analytics.aggregates import OVERALL
from services.analytics.audit import (
    WATERMARKS,
    Drift,
    drifts,
    nest,
    recount_within,
    watermark_fields,
    watermarks,
)
from services.analytics.store import AnalyticsStore
from shared.mongo import Document


@dataclass(frozen=True)
class Audit:
    """What a verify found."""

    documents: int
    counters: int
    drifts: list[Drift]


async def verify(store: AnalyticsStore) -> Audit:
    """Compare every counter of every aggregate document with a recount."""
    running = await store.aggregates()  # before the raw responses: see the module docstring
    marks = {key: watermarks(document) for key, document in running.items()}
    items = [item async for item in store.counted()]
    recount = recount_within(items, lambda key: marks.get(key, {}))
    found = drifts(running, recount)
    counters = sum(len(counter) for counter in recount.values())
    return Audit(documents=len(set(running) | set(recount)), counters=counters, drifts=found)


async def rebuild(store: AnalyticsStore) -> dict[str, Counter[str]]:
    """Recompute every aggregate document from the raw responses; returns what was written."""
    running = await store.aggregates()
    boundary = watermarks(running.get(OVERALL))
    items = [item async for item in store.counted()]
    recount = recount_within(items, lambda _: boundary)
    documents: dict[str, Document] = {
        key: {**nest(counters), WATERMARKS: watermark_fields(boundary)}
        for key, counters in recount.items()
    }
    for key in running:
        # A document with nothing below the boundary keeps only the boundary: the responses
        # above it are counted into it again when they are read.
        documents.setdefault(key, {WATERMARKS: watermark_fields(boundary)})
    await store.replace_aggregates(documents)
    await store.sweep_parts()
    return recount
