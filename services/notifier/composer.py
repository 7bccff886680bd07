"""The emails of deliveries, composed for a focal point (pure: no I/O)."""

from __future__ import annotations

from dataclasses import dataclass

from services.notifier import consent, emails, unsubscribe
from services.notifier.records import FocalPoint, Item
from services.notifier.settings import NotifierSettings
from services.notifier.unsubscribe import LinkKeys


@dataclass(frozen=True)
class Composer:
    """Builds each email in the person's language, with their personal links."""

    sender: str
    base_url: str
    keys: LinkKeys

    @classmethod
    def of(cls, settings: NotifierSettings) -> Composer:
        """The composer of the service's sender, public address and link keys."""
        return cls(settings.mail_from, settings.public_base_url.rstrip("/"), settings.link_keys())

    def links(self, email_key: str) -> tuple[str, str]:
        """(unsubscribe, preferences) links of a focal point."""
        return (
            f"{self.base_url}/v1/unsubscribe?token={self.keys.token(email_key)}",
            f"{self.base_url}/v1/preferences?token="
            f"{self.keys.token(email_key, unsubscribe.PREFERENCES)}",
        )

    def pilots(self, person: FocalPoint, items: list[Item]) -> emails.Outgoing:
        """The email of one delivery, or the digest of several."""
        url, preferences = self.links(person.key)
        recipient = _recipient(person)
        if len(items) == 1:
            [(pilot, codes, key)] = items
            return emails.build(
                pilot,
                recipient,
                codes,
                sender=self.sender,
                unsubscribe_url=url,
                preferences_url=preferences,
                delivery_key=key,
            )
        return emails.build_digest(
            [(pilot, codes) for pilot, codes, _ in items],
            recipient,
            sender=self.sender,
            unsubscribe_url=url,
            preferences_url=preferences,
            # The same set of deliveries makes the same Message-ID if it has to be sent again.
            delivery_key="+".join(sorted(key for *_, key in items)),
        )

    def confirmation(self, person: FocalPoint, number: int, key: str) -> emails.Outgoing:
        """The email of confirmation request `number` of `person` (an open request)."""
        url, preferences = self.links(person.key)
        token = self.keys.confirm_token(person.key, number)
        request = person.request
        assert request is not None  # checked by the caller: the request is open
        return emails.build_confirmation(
            _recipient(person),
            sender=self.sender,
            confirm_url=f"{self.base_url}/v1/confirm?token={token}",
            expires_at=request.expires_at,
            unsubscribe_url=url,
            preferences_url=preferences,
            delivery_key=key,
        )


def _recipient(person: FocalPoint) -> emails.Recipient:
    if not person.email:
        raise ValueError("the focal point has no address (withdrawn, expired or erased)")
    return emails.Recipient(person.email, person.name or "", consent.language(person))
