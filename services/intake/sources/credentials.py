"""Secret checks shared by the platforms: constant-time comparisons, nothing ever logged."""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping

from services.intake.sources import Delivery, Rejected


def matches_any(presented: str, secrets: list[str]) -> bool:
    """Whether `presented` equals one of `secrets`, compared in constant time against each."""
    given = presented.encode()
    found = False
    for secret in secrets:
        # No early exit: the time taken does not tell which secret of a rotation matched.
        found |= hmac.compare_digest(given, secret.encode())
    return found and bool(presented)


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, if there is one."""
    scheme, _, token = headers.get("authorization", "").strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def basic_password(headers: Mapping[str, str]) -> str | None:
    """The password of an `Authorization: Basic` header (any user name), if there is one."""
    scheme, _, encoded = headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise Rejected(
            401, "Unauthorized", "the Authorization header is not valid basic auth"
        ) from None
    user, colon, password = decoded.partition(":")
    if not colon:
        raise Rejected(401, "Unauthorized", "the Authorization header is not valid basic auth")
    del user  # any user name is accepted: the password is the secret
    return password


def require_token(delivery: Delivery, secrets: list[str]) -> None:
    """Accept a secret as the `token` query parameter or as a bearer token; else `Rejected(401)`."""
    presented = [
        token
        for token in (delivery.query.get("token"), bearer_token(delivery.headers))
        if token is not None
    ]
    if not presented:
        raise Rejected(
            401,
            "Unauthorized",
            "a secret token is required: the `token` query parameter or `Authorization: Bearer`",
        )
    if not any(matches_any(token, secrets) for token in presented):
        raise Rejected(401, "Unauthorized", "the token matches no configured secret")
