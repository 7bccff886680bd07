"""shared.auth and the analytics settings: the operator token, JWT policy checks, fail-closed
settings. (JWTs against a served JWKS: tests/integration/test_analytics_access.py.)"""

from __future__ import annotations

import secrets

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import SecretStr, ValidationError

from services.analytics.settings import AnalyticsSettings
from shared.auth import (
    BearerAuth,
    InvalidCredentials,
    JwtPolicy,
    KeysUnavailable,
    check_jwks_url,
    grants,
)
from tests.support import free_port


def test_grants_scope_in_space_separated_scope() -> None:
    assert grants({"scope": "openid analytics:operator"}, "analytics:operator")
    assert not grants({"scope": "openid analytics:operator-extra"}, "analytics:operator")


def test_grants_scope_in_roles_list() -> None:
    assert grants({"roles": ["reader", "analytics:operator"]}, "analytics:operator")
    assert not grants({"roles": "analytics:operator"}, "analytics:operator")  # not a list
    assert not grants({}, "analytics:operator")


def test_check_jwks_url_https_or_loopback_http_only() -> None:
    assert check_jwks_url("https://idp.example.org/jwks") == "https://idp.example.org/jwks"
    assert check_jwks_url("http://127.0.0.1:9000/jwks") == "http://127.0.0.1:9000/jwks"
    for bad in ("http://idp.example.org/jwks", "ftp://127.0.0.1/jwks", "https:///jwks"):
        with pytest.raises(ValueError, match="JWKS_URL"):
            check_jwks_url(bad)


async def test_verify_operator_token_accepted_others_refused() -> None:
    auth = BearerAuth(SecretStr("s3cret-operator-token"))

    principal = await auth.verify("s3cret-operator-token")

    assert (principal.subject, principal.method) == ("operator", "operator-token")
    for wrong in ("s3cret-operator-toke", "", "a.b.c"):
        with pytest.raises(InvalidCredentials):
            await auth.verify(wrong)


async def test_verify_jwt_keys_unreachable_is_keys_unavailable() -> None:
    # Nobody listens there: the provider's keys cannot be fetched (a 503, not a 401).
    url = f"http://127.0.0.1:{free_port()}/jwks.json"
    auth = BearerAuth(SecretStr("operator"), JwtPolicy(url, "aud", "https://idp", "scope"))
    key = ec.generate_private_key(ec.SECP256R1())
    token = jwt.encode({"sub": "x"}, key, algorithm="ES256", headers={"kid": "k1"})

    with pytest.raises(KeysUnavailable):
        await auth.verify(token)


async def test_verify_jwt_other_algorithms_refused_before_any_fetch() -> None:
    url = f"http://127.0.0.1:{free_port()}/jwks.json"
    auth = BearerAuth(SecretStr("operator"), JwtPolicy(url, "aud", "https://idp", "scope"))
    unsigned = jwt.encode({"sub": "x"}, None, algorithm="none", headers={"kid": "k1"})
    hmac = jwt.encode({"sub": "x"}, "a-shared-secret-of-32-bytes-long!", algorithm="HS256")

    for token in (unsigned, hmac):
        with pytest.raises(InvalidCredentials, match="not accepted"):
            await auth.verify(token)


def test_settings_refuse_missing_blank_or_short_operator_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPERATOR_TOKEN", raising=False)
    with pytest.raises(ValidationError, match="operator_token"):
        AnalyticsSettings()
    with pytest.raises(ValidationError, match="OPERATOR_TOKEN is empty"):
        AnalyticsSettings(operator_token=SecretStr("  "))
    with pytest.raises(ValidationError, match=r"OPERATOR_TOKEN .*32 bytes"):
        AnalyticsSettings(operator_token=SecretStr("operator-token"))


def test_settings_jwks_url_needs_audience_and_issuer() -> None:
    token = SecretStr(secrets.token_urlsafe(32))
    with pytest.raises(ValidationError, match="JWT_AUDIENCE and JWT_ISSUER"):
        AnalyticsSettings(operator_token=token, jwks_url="https://idp.example.org/jwks")
    with pytest.raises(ValidationError, match="https"):
        AnalyticsSettings(
            operator_token=token,
            jwks_url="http://idp.example.org/jwks",
            jwt_audience="analytics",
            jwt_issuer="https://idp.example.org",
        )

    settings = AnalyticsSettings(
        operator_token=token,
        jwks_url="https://idp.example.org/jwks",
        jwt_audience="analytics",
        jwt_issuer="https://idp.example.org",
    )

    policy = settings.jwt_policy()
    assert policy is not None
    assert (policy.audience, policy.issuer, policy.scope) == (
        "analytics",
        "https://idp.example.org",
        "analytics:operator",
    )
    assert AnalyticsSettings(operator_token=token).jwt_policy() is None
    assert AnalyticsSettings(operator_token=token).min_cell_size == 5
