"""`python -m bench.filtered`: a repeated filtered view (operator) over `BENCH_RESPONSES`
(20,000) stored responses, counted the old way (one read of the matching stored responses per
request) and from the shared snapshot (one pass per state of the aggregate documents), in the
same run and database; then the first request after 200 more responses (a pass over those only),
and the public overview (suppression of every view together)."""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

from bench.analytics import response
from bench.load import with_random_secrets
from services.analytics import snapshots as snapshots_module
from services.analytics import views
from services.analytics.aggregates import Positioned, overall_from_surveys, summary, survey_key
from services.analytics.audit import nest, recount_within, watermarks
from services.analytics.documents import responses_query
from services.analytics.models import Filters
from services.analytics.settings import AnalyticsSettings
from services.analytics.snapshots import Snapshots
from services.analytics.store import AnalyticsStore
from services.analytics.wiring import wire
from shared.events import SurveyResponse

RESPONSES = int(os.environ.get("BENCH_RESPONSES", "20000"))
REPEATS = 5
ARRIVING = 200  # responses counted after the snapshot: the next pass reads only these
FILTERS = Filters(country="VN", respondent_type="local_government")


async def fill(store: AnalyticsStore, first: int, count: int) -> None:
    """Store and count responses `first`.. `first + count`, as the consumer would, over 6
    partitions."""
    rng = random.Random(first)
    batch: list[Positioned] = []
    for number in range(first, first + count):
        event = SurveyResponse.model_validate(response(rng, number))
        batch.append(Positioned(event, number % 6, number // 6))
        if len(batch) == 2000 or number == first + count - 1:
            await store.apply(await store.record(batch))
            batch = []


async def scan_per_request(store: AnalyticsStore) -> int:
    """The former filtered overview: read the matching responses, recount them."""
    documents = await store.survey_documents(
        survey_key(s) for s in ("cities-2024-priorities", "cities-2024-capacity")
    )
    marks = {key: watermarks(document) for key, document in documents.items()}
    query = responses_query(None, FILTERS.country, FILTERS.respondent_type)
    items = [item async for item in store.positioned(query)]
    counted = recount_within(items, lambda key: marks.get(key, {}))
    surveys = {key: c for key, c in counted.items() if key.startswith("survey:")}
    return int(summary(None, nest(overall_from_surveys(surveys)))["total"])


async def timed(label: str, call: Callable[[], Awaitable[object]]) -> list[float]:
    seconds = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        await call()
        seconds.append(time.perf_counter() - started)
    print(
        f"{label:<44} first {seconds[0] * 1000:8.1f} ms   "
        f"then median {statistics.median(seconds[1:]) * 1000:8.1f} ms"
    )
    return seconds


async def main() -> None:
    """Fill a fresh database, time both ways, drop it."""
    database = f"bench_filtered_{uuid.uuid4().hex[:8]}"
    settings = with_random_secrets(AnalyticsSettings, mongodb_database=database)
    wiring = wire(settings)
    client, store = wiring.client, wiring.store
    try:
        started = time.perf_counter()
        await fill(store, 0, RESPONSES)
        took = time.perf_counter() - started
        print(f"stored and counted {RESPONSES:,} responses in {took:.0f} s")
        snapshots = Snapshots(store, settings.min_cell_size, views.running_views)
        await timed("filtered overview, scan per request", lambda: scan_per_request(store))
        await timed(
            "filtered overview, shared snapshot",
            lambda: views.overview(snapshots, FILTERS, public=False),
        )
        await fill(store, RESPONSES, ARRIVING)
        # Timed to the end of the pass (the service answers from the previous state after 2 s).
        snapshots_module.FRESH_WAIT_SECONDS = 600
        started = time.perf_counter()
        await views.overview(snapshots, FILTERS, public=False)
        took = (time.perf_counter() - started) * 1000
        print(f"{f'filtered overview after {ARRIVING} new responses':<44} {took:8.1f} ms")
        await timed(
            "public overview (suppressed, all views)",
            lambda: views.overview(snapshots, Filters(), public=True),
        )
    finally:
        await client.drop_database(database)
        await client.close()


if __name__ == "__main__":
    asyncio.run(main())
