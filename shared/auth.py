"""Who may see detail: a bearer token that is the operator token, or a bearer JWT issued by the
organisation's identity provider and checked against its JWKS.

A JWT is accepted only when it is signed with RS256 or ES256 by a key of the JWKS (found by the
token's `kid`), is not expired, names the configured audience (`aud`) and issuer (`iss`), and
grants the configured scope, either in `scope` (space-separated, RFC 9068) or in `roles` (a list,
as identity providers put application roles). A token presented and not valid is always a 401:
a client that believes it is signed in must not silently get the public answer instead.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from shared.http import Problem

JWT_ALGORITHMS = ("RS256", "ES256")
JWKS_TIMEOUT_SECONDS = 5.0
JWKS_CACHE_SECONDS = 300.0
# A token naming a key id the cached JWKS lacks refetches it (the provider rotated its keys), but
# at most this often: random key ids must not turn each request into a call to the provider.
JWKS_REFETCH_SECONDS = 60.0
CLOCK_LEEWAY_SECONDS = 30
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})

bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="operator",
    bearerFormat="operator token or JWT",
    description="`Authorization: Bearer <OPERATOR_TOKEN>`, or a JWT of the identity provider "
    "whose keys are at `JWKS_URL` (RS256/ES256, audience `JWT_AUDIENCE`, issuer `JWT_ISSUER`, "
    "scope or role `JWT_SCOPE`).",
)


@dataclass(frozen=True)
class JwtPolicy:
    """What a JWT must satisfy."""

    jwks_url: str
    audience: str
    issuer: str
    scope: str


@dataclass(frozen=True)
class Principal:
    """Who was authenticated, and how."""

    subject: str
    method: Literal["operator-token", "jwt"]


class InvalidCredentials(Exception):
    """The bearer token is neither the operator token nor an acceptable JWT."""


class KeysUnavailable(Exception):
    """The identity provider's JWKS could not be fetched or read."""


def check_jwks_url(url: str) -> str:
    """The JWKS URL if it is HTTPS (or plain HTTP to this host, for development); else an error."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname in LOOPBACK:
        return url
    raise ValueError("JWKS_URL must be an https:// URL (http:// only to 127.0.0.1 or localhost)")


def grants(claims: Mapping[str, Any], scope: str) -> bool:
    """Whether the claims grant `scope`: in `scope` (space-separated) or in `roles` (a list)."""
    scopes = claims.get("scope")
    roles = claims.get("roles")
    in_scope = isinstance(scopes, str) and scope in scopes.split()
    in_roles = isinstance(roles, list) and scope in roles
    return in_scope or in_roles


class BearerAuth:
    """Checks bearer tokens; one per service process (it caches the JWKS)."""

    def __init__(self, operator_token: SecretStr, policy: JwtPolicy | None = None) -> None:
        self._operator = operator_token.get_secret_value().encode()
        self._policy = policy
        self._keys = (
            jwt.PyJWKClient(
                policy.jwks_url, lifespan=JWKS_CACHE_SECONDS, timeout=int(JWKS_TIMEOUT_SECONDS)
            )
            if policy
            else None
        )
        self._refetched = float("-inf")  # the first unknown key id may refetch at once

    async def verify(self, token: str) -> Principal:
        """The principal behind `token`; `InvalidCredentials` or `KeysUnavailable` otherwise."""
        if self._operator and hmac.compare_digest(token.encode(), self._operator):
            return Principal("operator", "operator-token")
        if self._policy is None or token.count(".") != 2:
            raise InvalidCredentials("not the operator token")
        # PyJWKClient fetches with blocking urllib: keep it off the event loop.
        return await asyncio.to_thread(self._verify_jwt, token, self._policy)

    def _verify_jwt(self, token: str, policy: JwtPolicy) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
            algorithm = header.get("alg")
            if algorithm not in JWT_ALGORITHMS:
                raise InvalidCredentials(f"algorithm {algorithm!r} is not accepted")
            key = self._signing_key(header.get("kid"))
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=policy.audience,
                issuer=policy.issuer,
                leeway=CLOCK_LEEWAY_SECONDS,
                options={"require": ["exp", "aud", "iss", "sub"]},
            )
        except jwt.PyJWKClientConnectionError as exc:
            raise KeysUnavailable(str(exc)) from exc
        except jwt.PyJWTError as exc:
            raise InvalidCredentials(str(exc)) from exc
        if not grants(claims, policy.scope):
            raise InvalidCredentials(f"the token does not grant {policy.scope!r}")
        return Principal(str(claims["sub"]), "jwt")

    def _signing_key(self, kid: object) -> Any:
        assert self._keys is not None
        if not isinstance(kid, str) or not kid:
            raise InvalidCredentials("the token names no key id (kid)")
        try:
            keys = self._keys.get_jwk_set()
            if kid not in {key.key_id for key in keys.keys}:
                if time.monotonic() - self._refetched < JWKS_REFETCH_SECONDS:
                    raise InvalidCredentials(f"unknown key id {kid!r}")
                self._refetched = time.monotonic()
                keys = self._keys.get_jwk_set(refresh=True)
            return keys[kid].key
        except KeyError as exc:
            raise InvalidCredentials(f"unknown key id {kid!r}") from exc
        except jwt.PyJWKClientConnectionError:
            raise
        except (jwt.PyJWKClientError, jwt.PyJWKSetError) as exc:
            raise KeysUnavailable(str(exc)) from exc


def unauthorized(detail: str, *, invalid_token: bool) -> Problem:
    """A 401 problem with the RFC 6750 challenge."""
    challenge = 'Bearer realm="operators"'
    if invalid_token:
        challenge += ', error="invalid_token"'
    return Problem(401, "Unauthorized", detail, headers={"WWW-Authenticate": challenge})


async def signed_in(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal | None:
    """The principal, or None when no credentials were sent; invalid credentials are a 401.
    Needs `app.state.bearer_auth` (a `BearerAuth`)."""
    if credentials is None:
        if request.headers.get("authorization"):
            detail = "only `Authorization: Bearer <token>` is accepted"
            raise unauthorized(detail, invalid_token=True)
        return None
    auth: BearerAuth = request.app.state.bearer_auth
    try:
        return await auth.verify(credentials.credentials)
    except InvalidCredentials as exc:
        raise unauthorized(f"invalid bearer token: {exc}", invalid_token=True) from exc
    except KeysUnavailable as exc:
        raise Problem(
            503,
            "Identity provider unavailable",
            "the keys to check the JWT could not be fetched; try again",
            headers={"Retry-After": "5"},
        ) from exc


def require_operator(principal: Principal | None) -> Principal:
    """The principal, or a 401 asking for credentials."""
    if principal is None:
        raise unauthorized("this view needs the operator token or a JWT", invalid_token=False)
    return principal


async def operator(
    principal: Annotated[Principal | None, Depends(signed_in)],
) -> Principal:
    """A FastAPI dependency: operators only."""
    return require_operator(principal)


SignedIn = Annotated[Principal | None, Depends(signed_in)]
Operator = Annotated[Principal, Depends(operator)]
# For routes open to everyone that show more to operators: OpenAPI's "no credentials, or these".
OPTIONAL_SECURITY: dict[str, Any] = {"security": [{}]}
