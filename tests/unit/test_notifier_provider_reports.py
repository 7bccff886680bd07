"""services.notifier.sns and provider_reports: SNS signatures (with a key and certificate made
here), the SES and Postmark report shapes, basic auth, and the settings that turn them on."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import ValidationError

from services.notifier import sns
from services.notifier.provider_reports import check_basic_auth
from services.notifier.report_formats import Invalid, parse_postmark, parse_ses
from services.notifier.settings import NotifierSettings
from services.notifier.suppressions import Event, Report
from shared.http import Problem
from shared.personal import normalise_email
from tests.sns_signing import (
    CERT_URL,
    TOPIC_ARN,
    Signer,
    certificate,
    postmark_bounce,
    postmark_spam_complaint,
    ses_bounce,
    ses_complaint,
)

SIGNER = Signer()
GOOD_SECRET = "pm-webhook-Xq93kf0aPz71LmN4vB8cD2eR6tY5uI0o"


def subscription(signer: Signer = SIGNER) -> dict[str, object]:
    return signer.sign(
        {
            "Type": "SubscriptionConfirmation",
            "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
            "Token": "2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a988666d92768dd60a",
            "TopicArn": TOPIC_ARN,
            "Message": "You have chosen to subscribe to the topic.",
            "SubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription",
            "Timestamp": "2026-12-03T09:00:00.000Z",
        }
    )


@pytest.mark.parametrize("version", ["1", "2"])
async def test_verify_signed_notification_accepted(version):
    body = SIGNER.notification(
        ses_bounce("f-1", "a@example.org"), message_id="m-1", version=version
    )

    message = await sns.Certificates(SIGNER.fetch).verify(body)

    assert (message.type, message.topic_arn, message.message_id) == (
        "Notification",
        TOPIC_ARN,
        "m-1",
    )
    assert json.loads(message.message)["bounce"]["feedbackId"] == "f-1"


async def test_verify_subscription_confirmation_accepted():
    message = await sns.Certificates(SIGNER.fetch).verify(subscription())

    assert (
        message.subscribe_url == "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription"
    )


async def test_verify_with_subject_signed_accepted():
    body = SIGNER.sign(
        {
            "Type": "Notification",
            "MessageId": "m-2",
            "TopicArn": TOPIC_ARN,
            "Subject": "Amazon SES Email Event Notification",
            "Message": "{}",
            "Timestamp": "2026-12-03T09:00:00.000Z",
        }
    )

    assert (await sns.Certificates(SIGNER.fetch).verify(body)).message == "{}"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("Message", json.dumps(ses_bounce("f-1", "someone.else@example.org"))),
        ("MessageId", "m-other"),
        ("TopicArn", "arn:aws:sns:eu-west-1:123456789012:other"),
        ("Timestamp", "2026-12-04T09:00:00.000Z"),
        ("Subject", "added after signing"),
        ("SignatureVersion", "2"),
    ],
)
async def test_verify_changed_field_refused(field, value):
    body = SIGNER.notification(ses_bounce("f-1", "a@example.org"), message_id="m-1")
    body[field] = value

    with pytest.raises(sns.Rejected) as caught:
        await sns.Certificates(SIGNER.fetch).verify(body)

    assert caught.value.field == "Signature"


async def test_verify_other_key_refused():
    impostor = Signer()
    body = impostor.notification(ses_bounce("f-1", "a@example.org"), message_id="m-1")

    with pytest.raises(sns.Rejected, match="does not match"):
        await sns.Certificates(SIGNER.fetch).verify(body)


@pytest.mark.parametrize(
    "url",
    [
        "http://sns.eu-west-1.amazonaws.com/cert.pem",
        "https://sns.eu-west-1.amazonaws.com.evil.example/cert.pem",
        "https://evil.example/sns.eu-west-1.amazonaws.com/cert.pem",
        "https://user@sns.eu-west-1.amazonaws.com/cert.pem",
        "https://sns.eu-west-1.amazonaws.com:8443/cert.pem",
        "https://s3.amazonaws.com/cert.pem",
    ],
)
async def test_verify_certificate_url_not_sns_refused_never_fetched(url):
    signer = Signer()
    body = signer.notification(ses_bounce("f-1", "a@example.org"), message_id="m-1")
    body["SigningCertURL"] = url

    with pytest.raises(sns.Rejected) as caught:
        await sns.Certificates(signer.fetch).verify(body)

    assert caught.value.field == "SigningCertURL"
    assert signer.fetched == []


async def test_verify_subscribe_url_not_sns_refused():
    body = subscription()
    body["SubscribeURL"] = "https://evil.example/?Action=ConfirmSubscription"

    with pytest.raises(sns.Rejected) as caught:
        await sns.Certificates(SIGNER.fetch).verify(body)

    assert caught.value.field == "SubscribeURL"


async def test_verify_expired_certificate_refused():
    signer = Signer()
    signer.pems[CERT_URL] = certificate(signer.key, days=1, start=-3)
    body = signer.notification(ses_bounce("f-1", "a@example.org"), message_id="m-1")

    with pytest.raises(sns.Rejected, match="not valid now"):
        await sns.Certificates(signer.fetch).verify(body)


async def test_verify_certificate_fetched_once_then_cached():
    signer = Signer()
    certificates = sns.Certificates(signer.fetch)
    for n in range(3):
        body = signer.notification(ses_bounce(f"f-{n}", "a@example.org"), message_id=f"m-{n}")
        await certificates.verify(body)

    assert signer.fetched == [CERT_URL]


async def test_verify_certificate_unreachable_unavailable():
    async def failing(url: str) -> bytes:
        raise OSError("no route")

    body = SIGNER.notification(ses_bounce("f-1", "a@example.org"), message_id="m-1")

    with pytest.raises(sns.Unavailable):
        await sns.Certificates(failing).verify(body)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"Type": "Surprise"}, "Type"),
        ({"MessageId": ""}, "MessageId"),
        ({"Message": None}, "Message"),
        ({"SignatureVersion": "3"}, "SignatureVersion"),
        ({"TopicArn": "not-an-arn"}, "TopicArn"),
    ],
)
def test_parse_missing_or_bad_field_named(change, field):
    body = {**SIGNER.notification(ses_bounce("f-1", "a@example.org"), message_id="m"), **change}

    with pytest.raises(sns.Rejected) as caught:
        sns.parse(body)

    assert caught.value.field == field


def test_parse_ses_permanent_bounce_each_recipient():
    parsed = parse_ses(
        json.dumps(ses_bounce("f-7", "A@Example.org", '"Jane" <jane@example.org>')), normalise_email
    )

    assert parsed.reports == [
        Report("ses", "f-7", "a@example.org", Event.BOUNCE),
        Report("ses", "f-7", "jane@example.org", Event.BOUNCE),
    ]


@pytest.mark.parametrize("bounce_type", ["Transient", "Undetermined"])
def test_parse_ses_other_bounce_soft(bounce_type):
    parsed = parse_ses(
        json.dumps(ses_bounce("f-8", "a@example.org", bounce_type=bounce_type)), normalise_email
    )

    assert [r.event for r in parsed.reports] == [Event.SOFT_BOUNCE]


def test_parse_ses_complaint():
    parsed = parse_ses(json.dumps(ses_complaint("f-9", "a@example.org")), normalise_email)

    assert parsed.reports == [Report("ses", "f-9", "a@example.org", Event.COMPLAINT)]


def test_parse_ses_event_publishing_event_type():
    notification = ses_complaint("f-9", "a@example.org")
    notification["eventType"] = notification.pop("notificationType")

    assert [r.event for r in parse_ses(json.dumps(notification), normalise_email).reports] == [
        Event.COMPLAINT
    ]


def test_parse_ses_not_spam_feedback_ignored():
    parsed = parse_ses(
        json.dumps(ses_complaint("f-9", "a@example.org", feedback_type="not-spam")), normalise_email
    )

    assert parsed.reports == [] and parsed.ignored


def test_parse_ses_delivery_ignored():
    parsed = parse_ses(
        json.dumps({"notificationType": "Delivery", "delivery": {}}), normalise_email
    )

    assert parsed.reports == [] and "Delivery" in str(parsed.ignored)


@pytest.mark.parametrize(
    ("notification", "field"),
    [
        ("not json", "Message"),
        ([], "Message"),
        ({"bounce": {}}, "Message.notificationType"),
        ({"notificationType": "Bounce"}, "Message.bounce"),
        (
            {"notificationType": "Bounce", "bounce": {"bounceType": "Odd", "feedbackId": "f"}},
            "Message.bounce.bounceType",
        ),
        (
            {"notificationType": "Bounce", "bounce": {"bounceType": "Permanent"}},
            "Message.bounce.feedbackId",
        ),
        (
            {"notificationType": "Complaint", "complaint": {"feedbackId": "f"}},
            "Message.complaint.complainedRecipients",
        ),
        (
            {
                "notificationType": "Complaint",
                "complaint": {"feedbackId": "f", "complainedRecipients": [{"emailAddress": "x"}]},
            },
            "Message.complaint.complainedRecipients[0].emailAddress",
        ),
    ],
)
def test_parse_ses_bad_notification_names_field(notification, field):
    text = notification if isinstance(notification, str) else json.dumps(notification)

    with pytest.raises(Invalid) as caught:
        parse_ses(text, normalise_email)

    assert caught.value.field == field


@pytest.mark.parametrize(
    ("bounce_type", "event"),
    [
        ("HardBounce", Event.BOUNCE),
        ("BadEmailAddress", Event.BOUNCE),
        ("SoftBounce", Event.SOFT_BOUNCE),
        ("Transient", Event.SOFT_BOUNCE),
    ],
)
def test_parse_postmark_bounce_types(bounce_type, event):
    parsed = parse_postmark(
        postmark_bounce(4323372036, "Someone@Example.org", bounce_type), normalise_email
    )

    assert parsed.reports == [Report("postmark", "4323372036", "someone@example.org", event)]


def test_parse_postmark_spam_complaint():
    parsed = parse_postmark(postmark_spam_complaint(42, "a@example.org"), normalise_email)

    assert parsed.reports == [Report("postmark", "42", "a@example.org", Event.COMPLAINT)]


@pytest.mark.parametrize("bounce_type", ["AutoResponder", "Blocked", "SpamNotification"])
def test_parse_postmark_other_bounce_types_ignored(bounce_type):
    parsed = parse_postmark(postmark_bounce(1, "a@example.org", bounce_type), normalise_email)

    assert parsed.reports == [] and bounce_type in str(parsed.ignored)


def test_parse_postmark_delivery_record_ignored():
    assert parse_postmark(
        {"RecordType": "Delivery", "Recipient": "a@example.org"}, normalise_email
    ).ignored


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"RecordType": None}, "RecordType"),
        ({"ID": None}, "ID"),
        ({"ID": True}, "ID"),
        ({"Email": "nobody"}, "Email"),
        ({"Email": None}, "Email"),
    ],
)
def test_parse_postmark_bad_body_names_field(change, field):
    with pytest.raises(Invalid) as caught:
        parse_postmark({**postmark_bounce(1, "a@example.org"), **change}, normalise_email)

    assert caught.value.field == field


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_check_basic_auth_any_user_rotated_secret_accepted():
    check_basic_auth(
        basic("postmark", GOOD_SECRET), ["new-secret-value-0123456789abcdefXYZ", GOOD_SECRET]
    )


@pytest.mark.parametrize(
    "header",
    [
        "",
        "Bearer " + GOOD_SECRET,
        basic("postmark", "wrong"),
        "Basic !!!",
        "Basic " + base64.b64encode(b"nocolon").decode(),
    ],
)
def test_check_basic_auth_bad_credentials_401(header):
    with pytest.raises(Problem) as caught:
        check_basic_auth(header, [GOOD_SECRET])

    assert caught.value.status == 401
    assert caught.value.headers["WWW-Authenticate"].startswith("Basic")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("short", "POSTMARK_WEBHOOK_SECRET is shorter than 32 bytes"),
        ("", "POSTMARK_WEBHOOK_SECRET is empty"),
        ("change-me-in-production", "POSTMARK_WEBHOOK_SECRET is a known placeholder"),
        (f"{GOOD_SECRET} short", r"POSTMARK_WEBHOOK_SECRET \(value 2\) is shorter"),
    ],
)
def test_settings_postmark_secret_weak_refused(monkeypatch, value, message):
    monkeypatch.setenv("POSTMARK_WEBHOOK_SECRET", value)

    with pytest.raises(ValidationError, match=message):
        NotifierSettings()


def test_settings_postmark_secret_required(monkeypatch):
    monkeypatch.delenv("POSTMARK_WEBHOOK_SECRET")

    with pytest.raises(ValidationError, match="postmark_webhook_secret"):
        NotifierSettings()


def test_settings_postmark_secret_rotation_values(monkeypatch):
    monkeypatch.setenv("POSTMARK_WEBHOOK_SECRET", f" {GOOD_SECRET}  other-{GOOD_SECRET} ")

    assert NotifierSettings().postmark_secrets == [GOOD_SECRET, f"other-{GOOD_SECRET}"]


def test_settings_topic_arns_checked():
    assert NotifierSettings(ses_topic_arns=f"{TOPIC_ARN}  {TOPIC_ARN}-2").ses_topic_arns

    with pytest.raises(ValidationError, match="SES_TOPIC_ARNS"):
        NotifierSettings(ses_topic_arns="arn:aws:s3:::bucket")


def test_string_to_sign_documented_order():
    fields = {
        "Type": "Notification",
        "TopicArn": "t",
        "Timestamp": "ts",
        "MessageId": "id",
        "Message": "m",
        "Signature": "ignored",
    }

    assert (
        sns.string_to_sign(fields)
        == b"Message\nm\nMessageId\nid\nTimestamp\nts\nTopicArn\nt\nType\nNotification\n"
    )


def test_public_key_not_rsa_refused():
    pem = certificate(ec.generate_private_key(ec.SECP256R1()))

    with pytest.raises(sns.Rejected, match="not RSA"):
        sns.public_key(pem, datetime.now(UTC))
