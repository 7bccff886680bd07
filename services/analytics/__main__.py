"""`python -m services.analytics [serve | rebuild | verify]`: serve (the default), or repair and
check the aggregates (see `maintenance.py` for when each is safe)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from services.analytics import maintenance
from services.analytics.aggregates import OVERALL
from services.analytics.app import create_app
from services.analytics.settings import AnalyticsSettings
from services.analytics.store import AnalyticsStore
from services.analytics.wiring import wire
from shared.serve import serve
from shared.settings import load_settings


def main(argv: list[str] | None = None) -> int:
    """Run the chosen command; the exit code says whether it succeeded."""
    parser = argparse.ArgumentParser(prog="python -m services.analytics")
    parser.add_argument(
        "command",
        nargs="?",
        default="serve",
        choices=("serve", "rebuild", "verify"),
        help="serve the API and consumer (default); rebuild the aggregates from the raw "
        "responses (consumers stopped); verify them against a recount (exit 1 on drift)",
    )
    command = parser.parse_args(argv).command
    settings = load_settings(AnalyticsSettings, "analytics")
    if command == "serve":
        serve(
            create_app(settings),
            host=settings.analytics_host,
            port=settings.analytics_port,
            log_level=settings.log_level,
        )
        return 0
    return asyncio.run(_rebuild(settings) if command == "rebuild" else _verify(settings))


@asynccontextmanager
async def _store(settings: AnalyticsSettings) -> AsyncIterator[AnalyticsStore]:
    """The store for one maintenance command; the client is closed however it ends."""
    wiring = wire(settings)
    try:
        yield wiring.store
    finally:
        await wiring.close()


async def _verify(settings: AnalyticsSettings) -> int:
    async with _store(settings) as store:
        audit = await maintenance.verify(store)
    for drift in audit.drifts:
        print(f"drift: {drift}")
    verdict = f"{len(audit.drifts)} drifting counter(s)" if audit.drifts else "no drift"
    print(f"verified {audit.documents} aggregate documents, {audit.counters} counters: {verdict}")
    return 1 if audit.drifts else 0


async def _rebuild(settings: AnalyticsSettings) -> int:
    async with _store(settings) as store:
        written = await maintenance.rebuild(store)
    total = written[OVERALL]["total"] if OVERALL in written else 0
    print(f"rebuilt {len(written)} aggregate documents from {total} counted responses")
    return 0


if __name__ == "__main__":
    sys.exit(main())
