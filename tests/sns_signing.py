"""For tests of the SES endpoint: SNS messages signed as SNS signs them, with a key and a
certificate made for the test, served through the notifier's certificate port (`sns.Fetch`)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

TOPIC_ARN = "arn:aws:sns:eu-west-1:123456789012:ses-reports"
CERT_URL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-test.pem"
# The fields SNS signs, in its order (the AWS documentation's list, written out here again so
# that the test does not lean on the code under test).
SIGNED = {
    "Notification": ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"],
    "SubscriptionConfirmation": [
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ],
}


def certificate(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, *, days: int = 30, start: int = -1
) -> bytes:
    """A self-signed PEM certificate for `key`, valid from `start` days for `days` days."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = datetime.now(UTC)
    built = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + timedelta(days=start))
        .not_valid_after(now + timedelta(days=start + days))
        .sign(key, hashes.SHA256())
    )
    return built.public_bytes(serialization.Encoding.PEM)


@dataclass
class Signer:
    """Signs SNS messages; `fetch` is the certificate port serving its certificate."""

    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    fetched: list[str] = field(default_factory=list)
    pems: dict[str, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.pems.setdefault(CERT_URL, certificate(self.key))

    async def fetch(self, url: str) -> bytes:
        """The port: the certificate of a known URL; any other URL answers an empty body."""
        self.fetched.append(url)
        return self.pems.get(url, b"")

    def sign(self, message: dict[str, Any], version: str = "1") -> dict[str, Any]:
        """`message` with SignatureVersion, SigningCertURL and Signature set."""
        signed = {"SignatureVersion": version, "SigningCertURL": CERT_URL, **message}
        text = "".join(
            f"{name}\n{signed[name]}\n" for name in SIGNED[signed["Type"]] if name in signed
        )
        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
        signature = self.key.sign(text.encode(), padding.PKCS1v15(), algorithm)
        signed["Signature"] = base64.b64encode(signature).decode()
        return signed

    def notification(
        self, ses: dict[str, Any], *, message_id: str, topic: str = TOPIC_ARN, version: str = "1"
    ) -> dict[str, Any]:
        """A signed SNS Notification carrying the SES notification `ses`."""
        return self.sign(
            {
                "Type": "Notification",
                "MessageId": message_id,
                "TopicArn": topic,
                "Message": json.dumps(ses),
                "Timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe",
            },
            version,
        )


def ses_bounce(feedback_id: str, *addresses: str, bounce_type: str = "Permanent") -> dict[str, Any]:
    """An SES bounce notification shaped as AWS documents it."""
    return {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "bounceSubType": "General",
            "bouncedRecipients": [
                {
                    "emailAddress": address,
                    "action": "failed",
                    "status": "5.1.1",
                    "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                }
                for address in addresses
            ],
            "timestamp": "2026-12-03T09:00:00.000Z",
            "feedbackId": feedback_id,
            "reportingMTA": "dsn; a8-70.smtp-out.amazonses.com",
        },
        "mail": _mail(addresses),
    }


def ses_complaint(
    feedback_id: str, *addresses: str, feedback_type: str = "abuse"
) -> dict[str, Any]:
    """An SES complaint notification shaped as AWS documents it."""
    return {
        "notificationType": "Complaint",
        "complaint": {
            "userAgent": "ExampleCorp Feedback Loop (V0.01)",
            "complainedRecipients": [{"emailAddress": address} for address in addresses],
            "complaintFeedbackType": feedback_type,
            "arrivalDate": "2026-12-03T09:00:00.000Z",
            "timestamp": "2026-12-03T09:00:01.000Z",
            "feedbackId": feedback_id,
        },
        "mail": _mail(addresses),
    }


def _mail(addresses: tuple[str, ...]) -> dict[str, Any]:
    return {
        "timestamp": "2026-12-03T08:59:58.000Z",
        "messageId": "0000014a0d5b8c0d-3c2d1e0f-0000-0000-0000-000000000000-000000",
        "source": "pilots@cities.example.org",
        "sourceArn": "arn:aws:ses:eu-west-1:123456789012:identity/cities.example.org",
        "sendingAccountId": "123456789012",
        "destination": list(addresses),
    }


def postmark_bounce(
    record_id: int, address: str, bounce_type: str = "HardBounce"
) -> dict[str, Any]:
    """A Postmark bounce webhook body shaped as Postmark documents it."""
    return {
        "RecordType": "Bounce",
        "MessageStream": "outbound",
        "ID": record_id,
        "Type": bounce_type,
        "TypeCode": {"HardBounce": 1, "SoftBounce": 4096, "Transient": 2}.get(bounce_type, 1),
        "Name": "Hard bounce",
        "Tag": "pilot",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Metadata": {},
        "ServerID": 23,
        "Description": "The server was unable to deliver your message (ex: unknown user).",
        "Details": "Test bounce details",
        "Email": address,
        "From": "pilots@cities.example.org",
        "BouncedAt": "2026-12-03T09:00:00Z",
        "DumpAvailable": True,
        "Inactive": True,
        "CanActivate": True,
        "Subject": "New pilot for your city",
        "Content": "Return-Path: <>",
    }


def postmark_spam_complaint(record_id: int, address: str) -> dict[str, Any]:
    """A Postmark spam complaint webhook body shaped as Postmark documents it."""
    return {
        "RecordType": "SpamComplaint",
        "MessageStream": "outbound",
        "ID": record_id,
        "Type": "SpamComplaint",
        "TypeCode": 512,
        "Name": "Spam complaint",
        "Tag": "pilot",
        "MessageID": "00000000-0000-0000-0000-000000000000",
        "Metadata": {},
        "ServerID": 1234,
        "Description": "The subscriber explicitly marked this message as spam.",
        "Details": "Test spam complaint details",
        "Email": address,
        "From": "pilots@cities.example.org",
        "BouncedAt": "2026-12-03T09:00:00Z",
        "DumpAvailable": True,
        "Inactive": True,
        "CanActivate": False,
        "Subject": "New pilot for your city",
        "Content": "<Abuse report dump>",
    }
