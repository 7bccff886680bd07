"""Link tokens that carry no personal data: `v1.<key id>.<opaque id>.<MAC>`. Pure.

- The opaque id names a focal point without revealing the address: the first 16 bytes of
  HMAC-SHA256 of the registry key (the keyed hash of the address, `shared.personal`) under
  `EMAIL_ID_SECRET`, base64url (22 characters). The registry finds the record by it. The key
  is long-lived: a new one would change every id, so it is not rotated like the signing keys.
- The MAC proves the notifier made the link: HMAC-SHA256, under one of the signing keys
  (`UNSUBSCRIBE_SECRET`), of the purpose (`unsubscribe`, `preferences`, `confirm`: a token of one
  kind opens no other) and `v1.<key id>.<opaque id>`, base64url (43 characters).
- A confirmation link names one confirmation request, not the person: its opaque id is made the
  same way from the registry key and the request's number (`request_id`), so a link of an
  earlier request confirms nothing once a later one was made.
- The key id says which signing key made the MAC: the first 8 base64url characters of
  SHA-256("link key id:" + key). It is derived from the key, so configuring a rotation is only
  `UNSUBSCRIBE_SECRET="NEW OLD"`: the first signs new links, a link made with any listed key is
  accepted, and links made with a key that was removed are refused.

Tokens of the first format (`<base64url(address)>.<MAC>`) carried the address; they are refused
with `OutdatedToken` (see `verify`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass

VERSION = "v1"
UNSUBSCRIBE = "unsubscribe"
PREFERENCES = "preferences"
CONFIRM = "confirm"
_TOKEN = re.compile(r"v1\.([A-Za-z0-9_-]{8})\.([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})")
_OLD_TOKEN = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}")


class InvalidToken(ValueError):
    """A token that was not made with one of our keys, or was altered."""


class OutdatedToken(InvalidToken):
    """A token of the first format, which carried the address: no longer accepted."""


def key_id(signing_key: str) -> str:
    """The id of a signing key in the tokens it signs (derived from the key; reveals nothing
    usable about it)."""
    return _b64(hashlib.sha256(b"link key id:" + signing_key.encode()).digest())[:8]


def opaque_id(email_key: str, id_key: str) -> str:
    """The opaque id of a focal point (its registry key, `shared.personal`)."""
    digest = hmac.new(id_key.encode(), b"focal point:" + email_key.encode(), hashlib.sha256)
    return _b64(digest.digest()[:16])


def request_id(email_key: str, number: int, id_key: str) -> str:
    """The opaque id of confirmation request `number` of a focal point."""
    message = f"confirmation:{number}:{email_key}".encode()
    return _b64(hmac.new(id_key.encode(), message, hashlib.sha256).digest()[:16])


def sign(link_id: str, signing_key: str, purpose: str = UNSUBSCRIBE) -> str:
    """`v1.<key id>.<link_id>.<MAC>`: whoever holds it may act on that one focal point."""
    body = f"{VERSION}.{key_id(signing_key)}.{link_id}"
    return f"{body}.{_b64(_mac(purpose, body, signing_key))}"


def verify(token: str, signing_keys: Sequence[str], purpose: str = UNSUBSCRIBE) -> str:
    """The opaque id of a genuine token made with one of `signing_keys` for `purpose`.

    `InvalidToken` otherwise, and `OutdatedToken` for a token of the first format. Those are
    refused rather than honoured: they hold the address in clear (refusing them keeps no reader
    of that format alive), and they were signed with keys that shipped as placeholders in
    development, so a valid-looking one may be forged.
    """
    found = _TOKEN.fullmatch(token)
    if found is None:
        if _OLD_TOKEN.fullmatch(token):
            raise OutdatedToken(
                "this link comes from an email of an older format and no longer works; "
                "use the link in a newer email, or reply to it to stop all emails"
            )
        raise InvalidToken("the link is not valid")
    kid, link_id, presented = found.groups()
    body = f"{VERSION}.{kid}.{link_id}"
    # Compared as text: base64 decoding forgives stray bits, so an altered token could decode to
    # the genuine bytes. Every key named by the id is tried (a clash of ids is possible, if
    # unlikely), with constant-time comparisons.
    valid = False
    for key in signing_keys:
        if key and hmac.compare_digest(key_id(key), kid):
            expected = _b64(_mac(purpose, body, key))
            valid |= hmac.compare_digest(presented.encode(), expected.encode())
    if not valid:
        raise InvalidToken("the link is not valid")
    return link_id


@dataclass(frozen=True)
class LinkKeys:
    """The keys of personal links: the opaque-id key and the signing keys (the first signs)."""

    id_key: str
    signing_keys: tuple[str, ...]

    def opaque_id(self, email_key: str) -> str:
        """The opaque id of the focal point with this registry key."""
        return opaque_id(email_key, self.id_key)

    def token(self, email_key: str, purpose: str = UNSUBSCRIBE) -> str:
        """A new token for the focal point with this registry key, signed with the first key."""
        return sign(self.opaque_id(email_key), self.signing_keys[0], purpose)

    def request_id(self, email_key: str, number: int) -> str:
        """The opaque id of confirmation request `number` of this focal point."""
        return request_id(email_key, number, self.id_key)

    def confirm_token(self, email_key: str, number: int) -> str:
        """The token of the link confirming request `number`, signed with the first key."""
        return sign(self.request_id(email_key, number), self.signing_keys[0], CONFIRM)

    def verify(self, token: str, purpose: str = UNSUBSCRIBE) -> str:
        """The opaque id a genuine token names (see `verify`)."""
        return verify(token, self.signing_keys, purpose)


def _mac(purpose: str, body: str, signing_key: str) -> bytes:
    return hmac.new(signing_key.encode(), f"{purpose}:{body}".encode(), hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")
