"""Unsubscribe tokens: the email address signed with HMAC-SHA256. Pure; no database to validate.

Several secrets can be valid at once, so the secret can be rotated without breaking the links in
emails already sent: new links are signed with the first, and a link signed with any of them is
accepted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac


class InvalidToken(ValueError):
    """A token that was not made with our secret, or was altered."""


def sign(email_key: str, secret: str) -> str:
    """`<base64url(email)>.<base64url(hmac)>`: anyone holding it may unsubscribe that address."""
    payload = _b64(email_key.encode())
    return f"{payload}.{_b64(_mac(payload, secret))}"


def verify(token: str, *secrets: str) -> str:
    """The email key a genuine token (signed with any of `secrets`) was made for; `InvalidToken`
    otherwise."""
    payload, _, signature = token.partition(".")
    # Compared as text: base64 decoding forgives padding and stray bits, so an altered token
    # could decode to the genuine bytes. Every secret is tried, so the time taken does not tell
    # which one (if any) matched.
    matches = [
        hmac.compare_digest(signature.encode(), _b64(_mac(payload, secret)).encode())
        for secret in secrets
        if secret
    ]
    if not payload or not any(matches):
        raise InvalidToken("the unsubscribe link is not valid")
    try:
        email_key = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidToken("the unsubscribe link is not valid") from exc
    if _b64(email_key.encode()) != payload:
        raise InvalidToken("the unsubscribe link is not valid")
    return email_key


def _mac(payload: str, secret: str) -> bytes:
    return hmac.new(secret.encode(), b"unsubscribe:" + payload.encode(), hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")
