"""services.notifier.settings: the bounds that keep the delivery promises."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from services.notifier.retry import backoff
from services.notifier.settings import NotifierSettings


def test_defaults_resend_within_a_minute_of_server_back():
    settings = NotifierSettings()

    worst = max(
        backoff(n, settings.retry_first_delay_seconds, settings.retry_max_delay_seconds, rng)
        for n in range(1, settings.max_attempts + 1)
        for rng in [random.Random(n)]
    )

    assert worst + settings.poll_interval_seconds < 60


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("retry_max_delay_seconds", 120),
        ("poll_interval_seconds", 60),
        ("send_rate_per_second", -1),
        ("retry_first_delay_seconds", 0),
    ],
)
def test_settings_out_of_bounds_rejected(name, value):
    with pytest.raises(ValidationError, match=name):
        NotifierSettings(**{name: value})


def test_settings_send_rate_default_limited():
    assert NotifierSettings().send_rate_per_second == 50.0


NEW_KEY = "new-unsubscribe-key-0123456789abcdefgh"
OLD_KEY = "old-unsubscribe-key-0123456789abcdefgh"


def test_settings_unsubscribe_secrets_first_signs_all_listed(monkeypatch):
    monkeypatch.setenv("UNSUBSCRIBE_SECRET", f"  {NEW_KEY}   {OLD_KEY} ")

    assert NotifierSettings().unsubscribe_secrets == [NEW_KEY, OLD_KEY]


@pytest.mark.parametrize("value", ["", "   "])
def test_settings_unsubscribe_secret_blank_rejected(monkeypatch, value):
    monkeypatch.setenv("UNSUBSCRIBE_SECRET", value)

    with pytest.raises(ValidationError, match="UNSUBSCRIBE_SECRET is empty"):
        NotifierSettings()
