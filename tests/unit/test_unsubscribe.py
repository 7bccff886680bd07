"""services.notifier.unsubscribe: HMAC-signed unsubscribe tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from services.notifier.unsubscribe import InvalidToken, sign, verify

SECRET = "unsubscribe-secret-for-tests"
EMAIL = "an.nguyen@example.org"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def replace_char(text: str, index: int) -> str:
    return text[:index] + ("B" if text[index] != "B" else "C") + text[index + 1 :]


def test_sign_format_payload_dot_hmac():
    payload = b64(EMAIL.encode())
    mac = hmac.new(SECRET.encode(), b"unsubscribe:" + payload.encode(), hashlib.sha256).digest()

    assert sign(EMAIL, SECRET) == f"{payload}.{b64(mac)}"


def test_sign_url_safe_without_padding():
    token = sign("ünïcødé+/?@example.org", SECRET)

    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


@pytest.mark.parametrize("email", [EMAIL, "nguyễn.văn.an@example.org", "a@b.c", "x" * 300])
def test_verify_round_trip(email):
    assert verify(sign(email, SECRET), SECRET) == email


def test_sign_deterministic():
    assert sign(EMAIL, SECRET) == sign(EMAIL, SECRET)


def test_verify_wrong_secret_raises():
    with pytest.raises(InvalidToken):
        verify(sign(EMAIL, SECRET), "another-secret")


def test_verify_altered_payload_raises():
    token = sign(EMAIL, SECRET)

    with pytest.raises(InvalidToken):
        verify(replace_char(token, 0), SECRET)


def test_verify_altered_signature_raises():
    token = sign(EMAIL, SECRET)
    middle = token.index(".") + 10

    with pytest.raises(InvalidToken):
        verify(replace_char(token, middle), SECRET)


def test_verify_token_edited_to_other_address_raises():
    token = sign(EMAIL, SECRET)
    _, _, signature = token.partition(".")
    edited = f"{b64(b'victim@example.org')}.{signature}"

    with pytest.raises(InvalidToken):
        verify(edited, SECRET)


def test_verify_forged_signature_with_other_key_raises():
    payload = b64(b"victim@example.org")
    forged = hmac.new(b"guess", b"unsubscribe:" + payload.encode(), hashlib.sha256).digest()

    with pytest.raises(InvalidToken):
        verify(f"{payload}.{b64(forged)}", SECRET)


def test_verify_signature_of_plain_payload_raises():
    # The MAC covers "unsubscribe:" + payload: a MAC of the bare payload is not accepted.
    payload = b64(EMAIL.encode())
    bare = hmac.new(SECRET.encode(), payload.encode(), hashlib.sha256).digest()

    with pytest.raises(InvalidToken):
        verify(f"{payload}.{b64(bare)}", SECRET)


def test_verify_payload_only_raises():
    token = sign(EMAIL, SECRET)

    with pytest.raises(InvalidToken):
        verify(token.partition(".")[0], SECRET)


def test_verify_signature_only_raises():
    token = sign(EMAIL, SECRET)

    with pytest.raises(InvalidToken):
        verify("." + token.partition(".")[2], SECRET)


@pytest.mark.parametrize(
    "garbage", ["", ".", "garbage", "a.b.c", "€€€.€€€", "!!!.???", "YQ.YQ", "====.===="]
)
def test_verify_garbage_raises(garbage):
    with pytest.raises(InvalidToken):
        verify(garbage, SECRET)


ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def flip_unused_bit(token: str) -> str:
    # 32 bytes are 43 base64 characters: the last 2 bits of the last one carry no data.
    last = ALPHABET.index(token[-1])
    return token[:-1] + ALPHABET[last ^ 1]


@pytest.mark.parametrize(
    "alter",
    [
        lambda token: token + "!",
        lambda token: token + "=",
        lambda token: token + "!!",
        flip_unused_bit,
    ],
    ids=["append-one-junk", "append-padding", "append-two-junk", "flip-unused-bit"],
)
def test_verify_altered_signature_same_bytes_raises(alter):
    # InvalidToken's docstring: a token that "was altered" is refused, including alterations
    # the lenient base64 decoder maps back to the same signature bytes.
    token = sign(EMAIL, SECRET)
    altered = alter(token)
    assert altered != token

    with pytest.raises(InvalidToken):
        verify(altered, SECRET)


def test_invalid_token_is_a_value_error():
    assert issubclass(InvalidToken, ValueError)


def test_verify_rotated_secrets_accepts_links_signed_with_either():
    old, new = "old-unsubscribe-secret", "new-unsubscribe-secret"

    assert verify(sign(EMAIL, old), new, old) == EMAIL
    assert verify(sign(EMAIL, new), new, old) == EMAIL


def test_verify_rotated_secrets_refuses_retired_secret():
    retired = sign(EMAIL, "retired-secret")

    with pytest.raises(InvalidToken):
        verify(retired, "new-unsubscribe-secret", "old-unsubscribe-secret")


def test_verify_no_usable_secret_refuses_everything():
    token = sign(EMAIL, "")

    with pytest.raises(InvalidToken):
        verify(token)
    with pytest.raises(InvalidToken):
        verify(token, "")
