"""The keyed hash that names a person in every record (`shared.personal`)."""

from __future__ import annotations

import base64
import hashlib
import hmac

from shared.personal import EmailKeys, email_key, is_email_key

SECRET = "k3y-for-the-tests-only-0123456789abcdefghij"


def test_email_key_is_hmac_of_normalised_address() -> None:
    expected = hmac.new(SECRET.encode(), b"email key:an.nguyen@example.org", hashlib.sha256)

    key = email_key("  An.Nguyen@Example.ORG ", SECRET)

    assert key == base64.urlsafe_b64encode(expected.digest()).decode().rstrip("=")
    assert is_email_key(key) and len(key) == 43


def test_email_key_case_and_space_same_person() -> None:
    keys = EmailKeys(SECRET)

    assert keys.key("A@Example.org") == keys.key(" a@example.ORG")
    assert keys.key("a@example.org") != keys.key("b@example.org")


def test_email_key_other_secret_other_key() -> None:
    assert email_key("a@example.org", SECRET) != email_key("a@example.org", SECRET + "x")


def test_email_key_reveals_no_address() -> None:
    key = email_key("an.nguyen@example.org", SECRET)

    assert "@" not in key and "nguyen" not in key.lower()


def test_is_email_key_refuses_addresses_and_other_shapes() -> None:
    assert not is_email_key("an.nguyen@example.org")
    assert not is_email_key("x" * 42)
    assert not is_email_key("x" * 44)
