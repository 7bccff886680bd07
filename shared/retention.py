"""The periodic retention sweep of the services that hold personal data
(`PERSONAL_DATA_RETENTION_DAYS`).

Each replica sweeps on its own schedule; the sweeps are idempotent (a record already anonymised
is not read again), so replicas sweeping at once only repeat each other's reads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

logger = logging.getLogger(__name__)
FIRST_SWEEP_AFTER_SECONDS = 5.0  # after start: let the consumers and the API come up first


async def sweep_periodically(
    name: str,
    sweep: Callable[[timedelta], Awaitable[int]],
    retention: timedelta,
    interval_seconds: float,
) -> None:
    """Run `sweep(retention)` now and then every `interval_seconds`, until cancelled; a failed
    sweep is logged and tried again at the next interval."""
    await asyncio.sleep(min(FIRST_SWEEP_AFTER_SECONDS, interval_seconds))
    while True:
        try:
            changed = await sweep(retention)
            if changed:
                logger.info("%s retention sweep: %d records anonymised", name, changed)
        except Exception:
            logger.exception("%s retention sweep failed; next try in %.0fs", name, interval_seconds)
        await asyncio.sleep(interval_seconds)
