"""Amazon SNS messages posted to an HTTPS endpoint: their fields and their signature.

SNS signs the string made of the documented fields of a message, each as its name, a line
break, its value and a line break, in a fixed order (Subject only when present; the
confirmations add SubscribeURL and Token). SignatureVersion 1 is RSA PKCS#1 v1.5 with SHA-1,
2 the same with SHA-256. The key is the certificate at SigningCertURL, which is accepted only
from an https URL on an SNS host (`sns.<region>.amazonaws.com`, or `.amazonaws.com.cn`), fetched
with the server's TLS certificate verified: that fetch is what ties the key to Amazon. The
certificate must be valid today; keys are cached by URL (SNS names a new URL when it rotates).

Fetching goes through a port (`Fetch`), so that tests serve a certificate of their own.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

NOTIFICATION = "Notification"
SUBSCRIPTION_CONFIRMATION = "SubscriptionConfirmation"
UNSUBSCRIBE_CONFIRMATION = "UnsubscribeConfirmation"
TYPES = (NOTIFICATION, SUBSCRIPTION_CONFIRMATION, UNSUBSCRIBE_CONFIRMATION)

# The signed fields, in the order SNS signs them.
NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
CONFIRMATION_FIELDS = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)
OPTIONAL_FIELDS = frozenset({"Subject"})
HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}

SNS_HOST = re.compile(r"sns\.[a-z0-9-]{1,40}\.amazonaws\.com(\.cn)?")
TOPIC_ARN = re.compile(r"arn:aws(-cn|-us-gov)?:sns:[a-z0-9-]{1,40}:\d{12}:[A-Za-z0-9_.-]{1,256}")
MAX_CERTIFICATE_BYTES = 64 * 1024
CERTIFICATES_CACHED = 32
FETCH_TIMEOUT_SECONDS = 5.0

# The port: the body of an https URL (a certificate, or a subscription's confirmation).
Fetch = Callable[[str], Awaitable[bytes]]


class Rejected(Exception):
    """A message that is not a genuine SNS message; `field` names what was wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class Unavailable(Exception):
    """The signing certificate could not be fetched: the message may be genuine, try later."""


@dataclass(frozen=True)
class Message:
    """A verified SNS message: its type, topic, id and payload (`Message`)."""

    type: str
    topic_arn: str
    message_id: str
    message: str
    subscribe_url: str | None


def string_to_sign(fields: Mapping[str, str]) -> bytes:
    """The canonical string SNS signs for a message of these fields."""
    names = NOTIFICATION_FIELDS if fields.get("Type") == NOTIFICATION else CONFIRMATION_FIELDS
    return "".join(
        f"{name}\n{fields[name]}\n"
        for name in names
        if not (name in OPTIONAL_FIELDS and name not in fields)
    ).encode()


def parse(body: Any) -> dict[str, str]:
    """The fields of an SNS message body (a JSON object), checked for presence and type."""
    if not isinstance(body, dict):
        raise Rejected("(body)", "an SNS message is a JSON object")
    kind = body.get("Type")
    if kind not in TYPES:
        raise Rejected("Type", f"must be one of {', '.join(TYPES)}")
    names = NOTIFICATION_FIELDS if kind == NOTIFICATION else CONFIRMATION_FIELDS
    required = [n for n in names if n not in OPTIONAL_FIELDS]
    required += ["SignatureVersion", "Signature", "SigningCertURL"]
    fields: dict[str, str] = {}
    present = [n for n in names if n in OPTIONAL_FIELDS and body.get(n) is not None]
    for name in [*required, *present]:
        value = body.get(name)
        if not isinstance(value, str) or (name in required and not value):
            raise Rejected(name, "is required and must be a non-empty string")
        fields[name] = value
    if fields["SignatureVersion"] not in HASHES:
        raise Rejected("SignatureVersion", "must be 1 (SHA1withRSA) or 2 (SHA256withRSA)")
    if not TOPIC_ARN.fullmatch(fields["TopicArn"]):
        raise Rejected("TopicArn", "is not an SNS topic ARN")
    check_sns_url(fields["SigningCertURL"], "SigningCertURL")
    if "SubscribeURL" in fields:
        check_sns_url(fields["SubscribeURL"], "SubscribeURL")
    return fields


def check_sns_url(url: str, field: str) -> None:
    """Refuse any URL but https on an SNS host (no user, no other port)."""
    parts = urlsplit(url)
    if parts.scheme != "https" or parts.username is not None or parts.port not in (None, 443):
        raise Rejected(field, "must be an https URL on an SNS host")
    if not SNS_HOST.fullmatch(parts.hostname or ""):
        raise Rejected(field, "must be on a host sns.<region>.amazonaws.com")


def verify_signature(fields: Mapping[str, str], key: rsa.RSAPublicKey) -> None:
    """Raise `Rejected` unless `key` signed the message's canonical string."""
    try:
        signature = base64.b64decode(fields["Signature"], validate=True)
    except (binascii.Error, ValueError):
        raise Rejected("Signature", "is not base64") from None
    algorithm = HASHES[fields["SignatureVersion"]]()
    try:
        key.verify(signature, string_to_sign(fields), padding.PKCS1v15(), algorithm)
    except InvalidSignature:
        raise Rejected("Signature", "does not match the message and its certificate") from None


def public_key(pem: bytes, now: datetime) -> rsa.RSAPublicKey:
    """The RSA key of a PEM certificate valid at `now`."""
    try:
        certificate = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise Rejected("SigningCertURL", "does not hold a PEM certificate") from None
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise Rejected("SigningCertURL", "the certificate is not valid now")
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise Rejected("SigningCertURL", "the certificate's key is not RSA")
    return key


class Certificates:
    """Signing keys by certificate URL, fetched once through `fetch` and cached."""

    def __init__(self, fetch: Fetch) -> None:
        self.fetch = fetch
        self._keys: OrderedDict[str, rsa.RSAPublicKey] = OrderedDict()

    async def key(self, url: str, now: datetime | None = None) -> rsa.RSAPublicKey:
        """The key of the certificate at `url` (already checked by `check_sns_url`)."""
        cached = self._keys.get(url)
        if cached is not None:
            self._keys.move_to_end(url)
            return cached
        try:
            pem = await self.fetch(url)
        except Exception as exc:
            raise Unavailable(f"signing certificate not fetched: {type(exc).__name__}") from exc
        key = public_key(pem, now or datetime.now(UTC))
        self._keys[url] = key
        if len(self._keys) > CERTIFICATES_CACHED:
            self._keys.popitem(last=False)
        return key

    async def verify(self, body: Any) -> Message:
        """The message of a genuine SNS body; `Rejected` or `Unavailable` otherwise."""
        fields = parse(body)
        verify_signature(fields, await self.key(fields["SigningCertURL"]))
        return Message(
            fields["Type"],
            fields["TopicArn"],
            fields["MessageId"],
            fields["Message"],
            fields.get("SubscribeURL"),
        )


async def https_get(url: str) -> bytes:
    """The default `Fetch`: GET over https with the server's certificate verified, no
    redirects, a short timeout and a size cap."""
    async with (
        httpx.AsyncClient(timeout=FETCH_TIMEOUT_SECONDS, follow_redirects=False) as client,
        client.stream("GET", url) as response,
    ):
        response.raise_for_status()
        body = b""
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > MAX_CERTIFICATE_BYTES:
                raise ValueError("response too large")
        return body
