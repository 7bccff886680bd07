"""The use case behind the providers' report webhooks and the operators' suppression list:
record what a parsed report says about each recipient (`suppressions` suppresses the addresses
it should), list the suppressions, lift one. The routes (`provider_reports`) authenticate and
parse; nothing here knows HTTP."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from services.notifier.ports import SuppressionListPort
from services.notifier.report_formats import Parsed
from services.notifier.suppressions import Applied


@dataclass(frozen=True)
class Recorded:
    """What a report did: `ignored` (nothing to record, with the reason), `duplicate` (every
    recipient recorded before) or `recorded`; how many recipients, how many now suppressed."""

    status: str
    recipients: int = 0
    suppressed: int = 0
    reason: str | None = None

    def answer(self) -> dict[str, Any]:
        """The webhook's answer (the provider only needs a 200 to stop sending it)."""
        if self.status == "ignored":
            return {"status": self.status, "reason": self.reason}
        return {"status": self.status, "recipients": self.recipients, "suppressed": self.suppressed}


def outcome(applied: Sequence[Applied]) -> Recorded:
    """The outcome of recording each recipient of one report (pure)."""
    new = sum(item.new for item in applied)
    return Recorded(
        "duplicate" if new == 0 else "recorded",
        recipients=len(applied),
        suppressed=sum(item.suppressed for item in applied),
    )


@dataclass(frozen=True)
class ReportIntake:
    """Provider reports in, suppressions out; the operators' view of the list."""

    suppressions: SuppressionListPort
    # The registry's key of an address (`Registry.key`): reports are parsed into keys.
    key: Callable[[str], str]
    soft_bounce_limit: int

    async def record(self, parsed: Parsed) -> Recorded:
        """Record each recipient of a parsed report once (raises
        `suppressions.ReportInProgress` while another request records the same one)."""
        if parsed.ignored is not None:
            return Recorded("ignored", reason=parsed.ignored)
        applied = [
            await self.suppressions.record(report, self.soft_bounce_limit)
            for report in parsed.reports
        ]
        return outcome(applied)

    async def listing(self, limit: int) -> dict[str, Any]:
        """The suppressed focal points (by key), newest first, with the counts by reason."""
        listed = await self.suppressions.listing(limit)
        return {
            "counts": await self.suppressions.counts(),
            "suppressions": [
                {
                    "focal_point": s.key,
                    "reason": s.reason,
                    "source": s.source,
                    "report_id": s.report_id,
                    "at": s.at.isoformat(),
                    "detail": s.detail,
                }
                for s in listed
            ],
        }

    async def lift(self, email_key: str) -> bool:
        """Lift the suppression of one focal point (an operator's decision); False when it was
        not listed."""
        return await self.suppressions.lift(email_key)
