"""services.notifier.unsubscribe: link tokens without personal data, with key ids."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from services.notifier.unsubscribe import (
    InvalidToken,
    LinkKeys,
    OutdatedToken,
    key_id,
    opaque_id,
    sign,
    verify,
)

ID_KEY = "email-id-key-for-tests-0123456789abcdef"
KEY = "unsubscribe-key-for-tests-0123456789abcdef"
OLD_KEY = "older-unsubscribe-key-for-tests-0123456789"
EMAIL = "an.nguyen@example.org"
KEYS = LinkKeys(ID_KEY, (KEY,))


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def replace_char(text: str, index: int) -> str:
    return text[:index] + ("B" if text[index] != "B" else "C") + text[index + 1 :]


def test_token_format_version_key_id_opaque_id_mac():
    token = KEYS.token(EMAIL)
    version, kid, link_id, mac = token.split(".")

    assert version == "v1"
    assert kid == b64(hashlib.sha256(b"link key id:" + KEY.encode()).digest())[:8]
    expected_id = hmac.new(ID_KEY.encode(), b"focal point:" + EMAIL.encode(), hashlib.sha256)
    assert link_id == b64(expected_id.digest()[:16])
    body = f"v1.{kid}.{link_id}".encode()
    assert mac == b64(hmac.new(KEY.encode(), b"unsubscribe:" + body, hashlib.sha256).digest())


@pytest.mark.parametrize("email", [EMAIL, "nguyễn.văn.an@example.org", "x" * 300 + "@example.org"])
def test_token_carries_no_part_of_the_address(email):
    token = KEYS.token(email)
    local, _, domain = email.partition("@")

    assert local not in token and domain not in token
    for encoded in (b64(email.encode()), b64(local.encode()), b64(domain.encode())):
        assert encoded[:6] not in token
    assert len(token) == 2 + 1 + 8 + 1 + 22 + 1 + 43


def test_token_url_safe():
    token = KEYS.token("ünïcødé+/?@example.org")

    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


@pytest.mark.parametrize("email", [EMAIL, "nguyễn.văn.an@example.org", "a@b.c", "x" * 300])
def test_verify_round_trip_gives_opaque_id(email):
    assert KEYS.verify(KEYS.token(email)) == opaque_id(email, ID_KEY)


def test_opaque_id_stable_and_distinct_per_address_and_key():
    assert opaque_id(EMAIL, ID_KEY) == opaque_id(EMAIL, ID_KEY)
    assert opaque_id(EMAIL, ID_KEY) != opaque_id("other@example.org", ID_KEY)
    assert opaque_id(EMAIL, ID_KEY) != opaque_id(EMAIL, ID_KEY + "x")


def test_opaque_id_independent_of_signing_key():
    # Rotating the signing key does not change who a link names.
    rotated = LinkKeys(ID_KEY, (OLD_KEY, KEY))
    assert rotated.verify(rotated.token(EMAIL)) == KEYS.verify(KEYS.token(EMAIL))


def test_verify_wrong_key_raises():
    with pytest.raises(InvalidToken):
        verify(KEYS.token(EMAIL), ["another-key-0123456789abcdefghijklmnop"])


@pytest.mark.parametrize("index", [0, 1, 3, 5, 12, 20, 40, 60, -1])
def test_verify_altered_character_raises(index):
    token = KEYS.token(EMAIL)
    position = index % len(token)
    if token[position] == ".":
        position += 1

    with pytest.raises(InvalidToken):
        KEYS.verify(replace_char(token, position))


def test_verify_token_edited_to_other_focal_point_raises():
    _, kid, _, mac = KEYS.token(EMAIL).split(".")
    victim = opaque_id("victim@example.org", ID_KEY)

    with pytest.raises(InvalidToken):
        KEYS.verify(f"v1.{kid}.{victim}.{mac}")


def test_verify_forged_with_guessed_key_raises():
    forged = sign(opaque_id("victim@example.org", ID_KEY), "guess-0123456789abcdefghijklmnopq")

    with pytest.raises(InvalidToken):
        KEYS.verify(forged)


def test_verify_forged_with_key_id_of_real_key_raises():
    # The key id is public: naming the real key's id with a MAC of another key gets nothing.
    forged = sign(opaque_id(EMAIL, ID_KEY), "guess-0123456789abcdefghijklmnopq")
    _, _, link_id, mac = forged.split(".")

    with pytest.raises(InvalidToken):
        KEYS.verify(f"v1.{key_id(KEY)}.{link_id}.{mac}")


def test_verify_other_purpose_raises():
    token = sign(opaque_id(EMAIL, ID_KEY), KEY, purpose="preferences")

    with pytest.raises(InvalidToken):
        KEYS.verify(token)
    assert verify(token, [KEY], purpose="preferences") == opaque_id(EMAIL, ID_KEY)


@pytest.mark.parametrize(
    "garbage",
    ["", ".", "garbage", "a.b.c", "v1...", "v1.a.b.c", "€€€.€€€", "!!!.???", "YQ.YQ", "====.===="],
)
def test_verify_garbage_raises(garbage):
    with pytest.raises(InvalidToken):
        KEYS.verify(garbage)


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
        lambda token: token + "A",
        lambda token: token + ".x",
        flip_unused_bit,
    ],
    ids=["append-junk", "append-padding", "append-base64", "append-part", "flip-unused-bit"],
)
def test_verify_altered_token_same_bytes_raises(alter):
    token = KEYS.token(EMAIL)
    altered = alter(token)
    assert altered != token

    with pytest.raises(InvalidToken):
        KEYS.verify(altered)


def test_verify_rotation_accepts_links_of_every_listed_key():
    old_links = LinkKeys(ID_KEY, (OLD_KEY,))
    rotated = LinkKeys(ID_KEY, (KEY, OLD_KEY))

    assert rotated.verify(old_links.token(EMAIL)) == opaque_id(EMAIL, ID_KEY)
    assert rotated.verify(KEYS.token(EMAIL)) == opaque_id(EMAIL, ID_KEY)
    assert rotated.token(EMAIL).split(".")[1] == key_id(KEY)  # the first key signs


def test_verify_rotation_refuses_retired_key():
    retired = LinkKeys(ID_KEY, ("retired-key-0123456789abcdefghijklmnop",)).token(EMAIL)

    with pytest.raises(InvalidToken):
        LinkKeys(ID_KEY, (KEY, OLD_KEY)).verify(retired)


def test_verify_no_usable_key_refuses_everything():
    token = KEYS.token(EMAIL)

    with pytest.raises(InvalidToken):
        verify(token, [])
    with pytest.raises(InvalidToken):
        verify(token, [""])


def test_verify_first_format_refused_as_outdated():
    # `<base64url(address)>.<MAC>`: the address in clear, refused even with the right key.
    payload = b64(EMAIL.encode())
    mac = hmac.new(KEY.encode(), b"unsubscribe:" + payload.encode(), hashlib.sha256).digest()

    with pytest.raises(OutdatedToken, match="older format"):
        KEYS.verify(f"{payload}.{b64(mac)}")


def test_key_id_differs_per_key_and_hides_it():
    assert key_id(KEY) != key_id(OLD_KEY)
    assert len(key_id(KEY)) == 8
    assert KEY[:8] not in key_id(KEY)


def test_invalid_token_is_a_value_error():
    assert issubclass(InvalidToken, ValueError)
    assert issubclass(OutdatedToken, InvalidToken)
