"""One module per survey platform. Each turns a platform's delivery into a canonical response.

Every platform module is pure: it gets the delivery as a `Delivery` (no framework objects), so it is
unit-tested without a server.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from services.intake.surveys import SurveyDefinition


@dataclass(frozen=True)
class Delivery:
    """One webhook delivery as received: headers (lower-case names), query, raw body."""

    headers: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes
    content_type: str


class Rejected(Exception):
    """A delivery the intake refuses; `status` is the HTTP status to answer with, `errors` the
    failing fields (`[{"field", "message"}]`) when there are several to name."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        errors: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors or []


class Platform(Protocol):
    """What the intake needs from a platform module."""

    name: str
    content_types: frozenset[str]

    def authenticate(self, delivery: Delivery, secrets: list[str]) -> None:
        """Raise `Rejected(401, ...)` unless the delivery proves it knows one of `secrets`."""

    def adapt(
        self, delivery: Delivery, survey: SurveyDefinition, received_at: datetime
    ) -> dict[str, Any]:
        """The canonical response (not yet validated); `Rejected(400, ...)` on a malformed body,
        `Rejected(422, ...)` naming each field and value that cannot be mapped."""


def platforms() -> dict[str, Platform]:
    """Every supported platform, by the `source` name used in webhook URLs."""
    from services.intake.sources import generic, google_forms, jotform, kobotoolbox, typeform

    modules = (generic, kobotoolbox, typeform, jotform, google_forms)
    return {module.PLATFORM.name: module.PLATFORM for module in modules}
