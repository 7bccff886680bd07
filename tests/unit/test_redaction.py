"""shared.redaction: no address, token or secret in a log line, whoever wrote it."""

from __future__ import annotations

import io
import json
import logging

import pytest
from pydantic import SecretStr
from pydantic_settings import BaseSettings

from shared.observability import JsonFormatter
from shared.redaction import RedactSecrets, redact, secret_values

TOKEN = "v1.AbCdEfGh.abcdefghijklmnopqrstuv." + "x" * 43


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        ("sent to an.nguyen@example.org", "an.nguyen@example.org"),
        ("sent to <Nguyễn.Văn@ví-dụ.vn>", "Nguyễn.Văn@ví-dụ.vn"),
        ("GET /x?email=an%40example.org HTTP/1.1", "an%40example.org"),
        ("550 5.1.1 <first+tag@mail.example.co.uk>: unknown", "first+tag@mail.example.co.uk"),
        ("/v1/webhooks/jotform/s?token=s3cr3t-value", "s3cr3t-value"),
        ("/v1/unsubscribe?token=" + TOKEN, TOKEN),
        ("link " + TOKEN + " sent", TOKEN),
        ("authorization: Bearer abc.DEF-123_~+/=", "abc.DEF-123_~+/="),
        ("Authorization: Basic a29ibzpzZWNyZXQ=", "a29ibzpzZWNyZXQ="),
        ("secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw used", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
    ],
)
def test_redact_hides_personal_data_and_credentials(text, hidden):
    assert hidden not in redact(text)
    assert "***" in redact(text)


def test_redact_configured_secret_anywhere():
    assert redact("value=plain-secret-value-12345!", ["plain-secret-value-12345"]) == "value=***!"


def test_redact_leaves_ordinary_text():
    text = 'pilot pilot-2025-007: 3 new deliveries; "POST /v1/pilots HTTP/1.1" 202'
    assert redact(text) == text


def test_filter_access_record_keeps_argument_tuple():
    # Uvicorn's own access formatter unpacks these five arguments.
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", f"/v1/unsubscribe?token={TOKEN}", "1.1", 200),
        None,
    )

    assert RedactSecrets().filter(record)
    assert isinstance(record.args, tuple) and len(record.args) == 5
    assert record.args[4] == 200
    assert TOKEN not in record.getMessage()
    assert "token=***" in record.getMessage()


def test_filter_application_record_with_object_argument():
    error = ValueError("recipient refused: an.nguyen@example.org")
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "failed: %s", (error,), None)

    RedactSecrets().filter(record)

    assert "an.nguyen@example.org" not in record.getMessage()


def test_filter_exception_text_redacted_in_json_line():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("notifier"))
    handler.addFilter(RedactSecrets(["configured-secret-0123456789"]))
    logger = logging.getLogger("tests.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            raise RuntimeError("to an.nguyen@example.org with configured-secret-0123456789")
        except RuntimeError:
            logger.exception("send failed for %s", "an.nguyen@example.org")
    finally:
        logger.removeHandler(handler)

    line = stream.getvalue()
    entry = json.loads(line)
    assert "an.nguyen@example.org" not in line
    assert "configured-secret-0123456789" not in line
    assert "RuntimeError" in entry["exception"]
    assert entry["message"] == "send failed for ***@***"


def test_secret_values_of_settings_and_webhook_variables():
    class Example(BaseSettings):
        example_token: SecretStr = SecretStr("op-token-0123456789abcdefghijkl")
        rotation: SecretStr = SecretStr("new-0123456789abcdefghijklmnopqr old-0123456789abcdefghij")
        plain: str = "not a secret"

    environ = {"WEBHOOK_SECRET_X_GENERIC": "whsec_a whsec_b", "PATH": "/usr/bin"}

    assert sorted(secret_values(Example(), environ)) == sorted(
        [
            "op-token-0123456789abcdefghijkl",
            "new-0123456789abcdefghijklmnopqr",
            "old-0123456789abcdefghij",
            "whsec_a",
            "whsec_b",
        ]
    )
