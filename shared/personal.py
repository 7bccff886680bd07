"""The one key of a person's records: a keyed hash of their email address. Pure.

Every record the services keep about a focal point is found by `EmailKeys.key(address)`, never
by the address itself: the notifier's registry `_id`, its deliveries, claims and link ids, the
analytics' `focal_point_key` of a stored response, and the erasure events of
`privacy.erasures.v1`. The address itself is kept only in the `email` field of the notifier's
registry document, so an erasure has one place to clear.

The key is HMAC-SHA256, under `EMAIL_KEY_SECRET`, of the normalised address (surrounding space
removed, lower-cased: one person per mailbox, whatever the case), base64url without padding (43
characters). Without the secret nobody can tell from a key which address it belongs to, nor
test a guessed address against it.

The secret cannot be rotated like a signing key: every stored key was made with it, so a new
value would orphan them all (and an erasure request would no longer find the records). It is
set once, kept for as long as the data, and shared by every service; a compromise is handled by
re-keying the stored records offline, not by listing two values.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass

# What a key looks like: 32 bytes of HMAC-SHA256, base64url without padding.
KEY_PATTERN = r"^[A-Za-z0-9_-]{43}$"
_KEY = re.compile(KEY_PATTERN)
_PURPOSE = b"email key:"


def normalise_email(email: str) -> str:
    """One focal point per mailbox, whatever the case of the address."""
    return email.strip().lower()


def email_key(email: str, secret: str) -> str:
    """The keyed hash of `email` under `secret`: the key of every record about that address."""
    digest = hmac.new(secret.encode(), _PURPOSE + normalise_email(email).encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()).decode().rstrip("=")


def is_email_key(value: str) -> bool:
    """Whether `value` has the shape of a key (not whether any address has it)."""
    return bool(_KEY.fullmatch(value))


@dataclass(frozen=True)
class EmailKeys:
    """`email_key` bound to the configured secret (`EMAIL_KEY_SECRET`)."""

    secret: str

    def key(self, email: str) -> str:
        """The key of the records about `email`."""
        return email_key(email, self.secret)
