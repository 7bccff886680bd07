"""shared.settings: secrets fail closed (no default, no placeholder, at least 32 bytes)."""

from __future__ import annotations

import secrets

import pytest
from pydantic import ValidationError

from services.analytics.settings import AnalyticsSettings
from services.intake.__main__ import placeholder_webhook_secrets
from services.intake.settings import IntakeSettings
from services.intake.surveys import SurveyCatalog
from services.notifier.settings import NotifierSettings
from shared.settings import (
    KNOWN_PLACEHOLDERS,
    MIN_SECRET_BYTES,
    is_placeholder,
    load_settings,
    secret_problem,
)

GOOD = "Zq3vN8pL2xR7tY5wK1mB9cD4fG6hJ0sA"  # 32 bytes, random-looking


def test_secret_problem_random_value_accepted():
    assert secret_problem("OPERATOR_TOKEN", secrets.token_urlsafe(32)) is None
    assert secret_problem("OPERATOR_TOKEN", GOOD) is None


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("", "is empty"),
        ("   ", "is empty"),
        ("change-me-in-production", "known placeholder"),
        ("dev-unsubscribe-secret", "known placeholder"),
        ("dev-operator-token", "known placeholder"),
        ("replace-with-a-long-random-string", "known placeholder"),
        ("CHANGEME", "known placeholder"),
        ("secret", "known placeholder"),
        ("please-change-me-to-a-long-random-value-0123", "known placeholder"),
        ("whsec_qEhDZKFlDI5dTKHTZQl5SavkdOUgL3xH", "known placeholder"),
        (GOOD[:31], "shorter than 32 bytes"),
        ("a" * 64, "not random"),
        ("abab" * 16, "not random"),
    ],
)
def test_secret_problem_names_variable_and_rule(value, rule):
    problem = secret_problem("UNSUBSCRIBE_SECRET", value)

    assert problem is not None
    assert problem.startswith("UNSUBSCRIBE_SECRET ")
    assert rule in problem
    assert value.strip() == "" or value not in problem  # the value itself is never repeated


def test_secret_problem_counts_bytes_not_characters():
    # 16 characters of 2 bytes each: 32 bytes.
    value = "éàüöçñßøåæœłðþ§¶"
    assert len(value.encode()) == MIN_SECRET_BYTES
    assert secret_problem("OPERATOR_TOKEN", value) is None


def test_placeholders_include_every_shipped_value():
    shipped = {
        "change-me-in-production",
        "dev-unsubscribe-secret",
        "dev-operator-token",
        "replace-with-a-long-random-string",
    }
    assert shipped <= KNOWN_PLACEHOLDERS
    assert all(is_placeholder(value.upper()) for value in shipped)


@pytest.mark.parametrize(
    "name", ["OPERATOR_TOKEN", "UNSUBSCRIBE_SECRET", "EMAIL_ID_SECRET", "EMAIL_KEY_SECRET"]
)
def test_notifier_settings_missing_secret_refused(monkeypatch, name):
    monkeypatch.delenv(name)

    with pytest.raises(ValidationError, match=name.lower()):
        NotifierSettings()


@pytest.mark.parametrize(
    "name", ["OPERATOR_TOKEN", "UNSUBSCRIBE_SECRET", "EMAIL_ID_SECRET", "EMAIL_KEY_SECRET"]
)
def test_notifier_settings_placeholder_secret_refused(monkeypatch, name):
    monkeypatch.setenv(name, "change-me-in-production")

    with pytest.raises(ValidationError, match=f"{name} is a known placeholder"):
        NotifierSettings()


@pytest.mark.parametrize("settings_class", [IntakeSettings, AnalyticsSettings])
def test_intake_and_analytics_settings_missing_email_key_secret_refused(
    monkeypatch, settings_class
):
    monkeypatch.delenv("EMAIL_KEY_SECRET")

    with pytest.raises(ValidationError, match="email_key_secret"):
        settings_class()


def test_intake_settings_missing_operator_token_refused(monkeypatch):
    monkeypatch.delenv("OPERATOR_TOKEN")

    with pytest.raises(ValidationError, match="operator_token"):
        IntakeSettings()


def test_intake_settings_short_operator_token_refused(monkeypatch):
    monkeypatch.setenv("OPERATOR_TOKEN", "short-token")

    with pytest.raises(ValidationError, match="OPERATOR_TOKEN is shorter than 32 bytes"):
        IntakeSettings()


def test_rotation_list_every_value_checked(monkeypatch):
    monkeypatch.setenv("UNSUBSCRIBE_SECRET", f"{GOOD} dev-unsubscribe-secret")

    with pytest.raises(ValidationError, match=r"UNSUBSCRIBE_SECRET \(value 2\) is a known"):
        NotifierSettings()


def test_rotation_list_of_good_values_accepted(monkeypatch):
    other = secrets.token_urlsafe(32)
    monkeypatch.setenv("UNSUBSCRIBE_SECRET", f"{GOOD} {other}")

    assert NotifierSettings().unsubscribe_secrets == [GOOD, other]


def test_secrets_have_no_default():
    for settings_class in (IntakeSettings, NotifierSettings):
        fields = settings_class.model_fields
        secret_fields = [name for name in fields if name.endswith(("_token", "_secret"))]
        assert secret_fields
        assert all(fields[name].is_required() for name in secret_fields), settings_class


def test_load_settings_refusal_one_line_per_variable_and_exit(monkeypatch, capsys):
    monkeypatch.delenv("OPERATOR_TOKEN")
    monkeypatch.setenv("UNSUBSCRIBE_SECRET", "dev-unsubscribe-secret")

    with pytest.raises(SystemExit) as exited:
        load_settings(NotifierSettings, "notifier")

    assert exited.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "notifier: refusing to start: OPERATOR_TOKEN is not set: it has no default",
        "notifier: refusing to start: UNSUBSCRIBE_SECRET is a known placeholder: "
        "set it to a random value of its own",
    ]


def test_placeholder_webhook_secrets_named(monkeypatch):
    catalog = SurveyCatalog.load(IntakeSettings().surveys_dir)
    environ = {
        "WEBHOOK_SECRET_CITIES_2024_PRIORITIES_GENERIC": "whsec_qEhDZKFlDI5dTKHTZQl5SavkdOUgL3xH",
        "WEBHOOK_SECRET_CITIES_2024_CAPACITY_GENERIC": f"whsec_{GOOD}",
    }

    assert placeholder_webhook_secrets(catalog, environ) == [
        "WEBHOOK_SECRET_CITIES_2024_PRIORITIES_GENERIC"
    ]
