"""services.notifier.settings: the SMTP send deadline against the lease, and the TLS settings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.notifier.settings import NotifierSettings


def test_settings_send_deadline_default_well_below_lease():
    settings = NotifierSettings()

    assert settings.send_deadline_seconds == 20.0
    assert settings.send_deadline_seconds <= settings.send_lease_seconds / 2


def test_settings_send_deadline_default_follows_short_lease():
    assert NotifierSettings(send_lease_seconds=10).send_deadline_seconds == 5.0


def test_settings_send_deadline_from_environment(monkeypatch):
    monkeypatch.setenv("SMTP_SEND_DEADLINE_SECONDS", "7.5")

    assert NotifierSettings().send_deadline_seconds == 7.5


@pytest.mark.parametrize(("deadline", "lease"), [(31, 60), (20, 30), (2, 3)])
def test_settings_send_deadline_over_half_lease_rejected(deadline, lease):
    with pytest.raises(ValidationError, match="at most half of SEND_LEASE_SECONDS"):
        NotifierSettings(smtp_send_deadline_seconds=deadline, send_lease_seconds=lease)


def test_settings_send_deadline_zero_rejected():
    with pytest.raises(ValidationError, match="smtp_send_deadline_seconds"):
        NotifierSettings(smtp_send_deadline_seconds=0)


def test_settings_starttls_and_implicit_tls_rejected(monkeypatch):
    monkeypatch.setenv("SMTP_STARTTLS", "true")
    monkeypatch.setenv("SMTP_IMPLICIT_TLS", "true")

    with pytest.raises(ValidationError, match="exclude each other"):
        NotifierSettings()


def test_settings_ca_file_missing_rejected(tmp_path):
    with pytest.raises(ValidationError, match="SMTP_CA_FILE"):
        NotifierSettings(smtp_ca_file=str(tmp_path / "absent.pem"))


def test_settings_ca_file_present_accepted(tmp_path, monkeypatch):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv("SMTP_CA_FILE", str(bundle))
    monkeypatch.setenv("SMTP_IMPLICIT_TLS", "true")

    settings = NotifierSettings()

    assert settings.smtp_ca_file == str(bundle)
    assert settings.smtp_implicit_tls
