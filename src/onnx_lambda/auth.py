"""The rules of API Gateway's HTTP API JWT authorizer, applied in-process.

In Lambda, API Gateway has already verified the token and the event carries its claims:
:func:`principal_from_event` reads them. Locally there is no gateway, so :class:`JwtVerifier` applies
the same rules to the bearer token itself:

* the token is a JWS signed with RS256 (nothing else, ``none`` and HMAC included) by the key whose
  ``kid`` is in the issuer's JWKS;
* ``iss`` equals the configured issuer exactly;
* ``aud`` (ID tokens) must be one of the configured audiences; only when ``aud`` is absent,
  ``client_id`` (Cognito access tokens) must be;
* ``exp`` is in the future, ``nbf`` and ``iat`` are not, each within a small leeway;
* a route with scopes needs at least one of them in ``scope`` (space-separated) or ``scp`` (list).

Failures raise :class:`~onnx_lambda.errors.Unauthorized` (401) or, for a valid token without an
accepted scope, :class:`~onnx_lambda.errors.Forbidden` (403). Messages say what was wrong and never
include the token.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import time
import types
import urllib.parse
import urllib.request
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from onnx_lambda.errors import Forbidden, Unauthorized

if TYPE_CHECKING:
    import jwt

    from onnx_lambda.config import Settings

log = logging.getLogger("onnx_lambda.auth")

ALGORITHM: Final = "RS256"
#: Upper bound on a JWKS document; Cognito's is about 1 KiB.
JWKS_MAX_BYTES: Final = 256 * 1024
JWKS_TIMEOUT_SECONDS: Final = 3.0
#: Verified tokens kept in memory; at most this many distinct callers are served from cache.
TOKEN_CACHE_SIZE: Final = 1024

FetchJwks = Callable[[str], Mapping[str, Any]]
Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, as the verified token (or API Gateway) says."""

    subject: str | None
    client_id: str | None
    username: str | None
    token_use: str | None
    scopes: frozenset[str]
    claims: Mapping[str, Any]

    def log_context(self) -> dict[str, str]:
        """The identity keys worth a log line: never the token, never the whole claim set."""
        keys = {"sub": self.subject, "client_id": self.client_id, "token_use": self.token_use}
        return {key: value for key, value in keys.items() if value}


class JwksUnavailable(Exception):
    """The JWKS endpoint could not be read or did not hold a usable key set."""


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header."""
    if authorization is None or not authorization.strip():
        raise Unauthorized("missing Authorization header: expected 'Bearer <access token>'")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise Unauthorized("the Authorization scheme must be Bearer")
    token = token.strip()
    if not token:
        raise Unauthorized("the Bearer token is empty")
    return token


def require_any_scope(principal: Principal, accepted: Collection[str]) -> None:
    """Allow the call when the principal holds one of ``accepted``; a route with none accepts any token."""
    if not accepted or principal.scopes & frozenset(accepted):
        return
    wanted = ", ".join(sorted(accepted))
    if principal.token_use == "id":  # noqa: S105  # nosec B105  # a claim value, not a password
        raise Forbidden(f"ID tokens carry no scopes: send an access token with one of: {wanted}")
    raise Forbidden(f"the token carries none of the scopes this route accepts: {wanted}")


def principal_from_event(event: Mapping[str, Any]) -> Principal:
    """The principal API Gateway's JWT authorizer verified, from a Lambda (HTTP API v2) event.

    A route deployed without the authorizer carries no claims and is refused: the function never
    trusts an unauthenticated request just because it reached it.
    """
    request_context = event.get("requestContext")
    authorizer = request_context.get("authorizer") if isinstance(request_context, Mapping) else None
    jwt_context = authorizer.get("jwt") if isinstance(authorizer, Mapping) else None
    claims = jwt_context.get("claims") if isinstance(jwt_context, Mapping) else None
    if not isinstance(claims, Mapping) or not claims:
        raise Unauthorized("the request carries no verified token claims (no JWT authorizer on this route)")
    assert isinstance(jwt_context, Mapping)
    event_scopes = jwt_context.get("scopes")
    if isinstance(event_scopes, list):
        scopes = frozenset(scope for scope in event_scopes if isinstance(scope, str))
    else:
        # API Gateway fills ``scopes`` only for routes configured with scopes; the claim is still there.
        scopes = _scopes_from_claims(claims)
    return _principal(claims, scopes)


class JwtVerifier:
    """Verifies bearer tokens against one issuer's JWKS, with the HTTP API JWT authorizer's rules.

    Keys are cached by ``kid``; an unknown ``kid`` triggers one refetch (key rotation), at most once
    per ``min_refetch_interval_seconds`` so that a flood of forged ``kid`` values cannot hammer the
    issuer. Verified tokens are cached until their ``exp``, so a caller's repeated token costs a hash
    and a dict lookup instead of an RSA verification.
    """

    def __init__(
        self,
        *,
        issuer: str,
        jwks_url: str,
        audience: Sequence[str],
        leeway_seconds: int = 30,
        fetch_jwks: FetchJwks | None = None,
        min_refetch_interval_seconds: float = 30.0,
        max_token_bytes: int = 8192,
        clock: Clock = time.time,
    ) -> None:
        if not issuer:
            raise ValueError("issuer must be set")
        if not audience:
            raise ValueError("audience must name at least one app client id")
        self._issuer = issuer
        self._jwks_url = jwks_url
        self._audience = frozenset(audience)
        self._leeway = leeway_seconds
        self._fetch_jwks = fetch_jwks or fetch_jwks_over_http
        self._min_refetch_interval = min_refetch_interval_seconds
        self._max_token_bytes = max_token_bytes
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._last_fetch_attempt: float | None = None
        self._fetch_lock = threading.Lock()
        self._verified: dict[bytes, tuple[float, Principal]] = {}
        self._verified_lock = threading.Lock()

    @property
    def issuer(self) -> str:
        return self._issuer

    def verify(self, token: str) -> Principal:
        """The token's principal; :class:`Unauthorized` when any rule fails."""
        if len(token) > self._max_token_bytes:
            raise Unauthorized(f"the token is larger than {self._max_token_bytes} bytes")
        if not token.isascii():
            raise Unauthorized("the token is not a well-formed JWT")
        cache_key = hashlib.sha256(token.encode("ascii")).digest()
        cached = self._verified.get(cache_key)
        now = self._clock()
        if cached is not None:
            expires_at, principal = cached
            if now < expires_at:
                return principal
            self._verified.pop(cache_key, None)
        principal, expires_at = self._verify_uncached(token, now)
        self._remember(cache_key, expires_at, principal)
        return principal

    def _verify_uncached(self, token: str, now: float) -> tuple[Principal, float]:
        import jwt  # only the local server verifies tokens; in Lambda, API Gateway did (see module doc)

        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise Unauthorized("the token is not a well-formed JWT") from None
        if header.get("alg") != ALGORITHM:
            raise Unauthorized(f"the token must be signed with {ALGORITHM}")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthorized("the token header names no signing key (kid)")
        key = self._key(kid)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                # The claim checks below follow API Gateway's rules and this verifier's clock.
                options={
                    "verify_signature": True,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": False,
                    "verify_iss": False,
                    "verify_sub": False,
                    "verify_jti": False,
                },
            )
        except jwt.InvalidSignatureError:
            raise Unauthorized("the token signature is invalid") from None
        except jwt.InvalidTokenError:
            raise Unauthorized("the token is not a well-formed JWT") from None
        expires_at = self._check_claims(claims, now)
        return _principal(claims, _scopes_from_claims(claims)), expires_at

    def _check_claims(self, claims: Mapping[str, Any], now: float) -> float:
        if claims.get("iss") != self._issuer:
            raise Unauthorized("the token was not issued by this service's issuer")
        if "aud" in claims:
            audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
            if not any(isinstance(aud, str) and aud in self._audience for aud in audiences):
                raise Unauthorized("the token does not have a valid audience")
        elif not isinstance(claims.get("client_id"), str) or claims["client_id"] not in self._audience:
            raise Unauthorized("the token does not have a valid client_id")
        exp = _numeric_date(claims, "exp")
        if exp is None:
            raise Unauthorized("the token has no expiry (exp)")
        if now >= exp + self._leeway:
            raise Unauthorized("the token has expired")
        nbf = _numeric_date(claims, "nbf")
        if nbf is not None and now < nbf - self._leeway:
            raise Unauthorized("the token is not valid yet (nbf)")
        iat = _numeric_date(claims, "iat")
        if iat is not None and now < iat - self._leeway:
            raise Unauthorized("the token was issued in the future (iat)")
        return exp

    def _key(self, kid: str) -> jwt.PyJWK:
        key = self._keys.get(kid)
        if key is not None:
            return key
        with self._fetch_lock:
            key = self._keys.get(kid)  # another thread may have refetched meanwhile
            if key is not None:
                return key
            now = self._clock()
            if self._last_fetch_attempt is not None and now - self._last_fetch_attempt < self._min_refetch_interval:
                raise Unauthorized("the token is signed by an unknown key")
            self._last_fetch_attempt = now
            try:
                keys = parse_jwks(self._fetch_jwks(self._jwks_url))
            except Exception as error:  # any fetch or parse failure fails closed
                log.warning(
                    "JWKS unavailable, refusing tokens (fail closed): %s: %s: %s",
                    self._jwks_url,
                    type(error).__name__,
                    error,
                )
                raise Unauthorized("the token cannot be verified: the issuer's signing keys are unavailable") from None
            # A key that left the set must not keep vouching for tokens verified with it.
            with self._verified_lock:
                self._verified.clear()
            self._keys = keys
            key = keys.get(kid)
        if key is None:
            raise Unauthorized("the token is signed by an unknown key")
        return key

    def _remember(self, cache_key: bytes, expires_at: float, principal: Principal) -> None:
        with self._verified_lock:
            if len(self._verified) >= TOKEN_CACHE_SIZE:
                now = self._clock()
                for stale in [k for k, (exp, _) in self._verified.items() if exp <= now]:
                    del self._verified[stale]
                while len(self._verified) >= TOKEN_CACHE_SIZE:
                    del self._verified[next(iter(self._verified))]  # oldest first
            self._verified[cache_key] = (expires_at, principal)


def verifier_from_settings(settings: Settings, *, fetch_jwks: FetchJwks | None = None) -> JwtVerifier:
    """The verifier for ``auth_mode=jwt``; a missing issuer or audience fails at start-up."""
    if not settings.jwt_issuer or not settings.jwks_url:
        raise ValueError("ONNX_LAMBDA_JWT_ISSUER must be set when ONNX_LAMBDA_AUTH_MODE=jwt")
    if not settings.jwt_audience:
        raise ValueError("ONNX_LAMBDA_JWT_AUDIENCE must name the app client ids when ONNX_LAMBDA_AUTH_MODE=jwt")
    return JwtVerifier(
        issuer=settings.jwt_issuer,
        jwks_url=settings.jwks_url,
        audience=settings.jwt_audience,
        leeway_seconds=settings.jwt_leeway_seconds,
        fetch_jwks=fetch_jwks,
    )


def fetch_jwks_over_http(url: str) -> Mapping[str, Any]:
    """GET a JWKS document with a short timeout; any failure is :class:`JwksUnavailable`."""
    if urllib.parse.urlsplit(url).scheme not in ("https", "http"):
        raise JwksUnavailable("the JWKS URL must be http(s)")
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310 - scheme checked
    try:
        with urllib.request.urlopen(request, timeout=JWKS_TIMEOUT_SECONDS) as response:  # noqa: S310  # nosec B310  # scheme checked above
            body = response.read(JWKS_MAX_BYTES + 1)
    except (OSError, ValueError) as error:
        raise JwksUnavailable(f"{type(error).__name__}: {error}") from None
    if len(body) > JWKS_MAX_BYTES:
        raise JwksUnavailable("the JWKS document is too large")
    try:
        document = json.loads(body)
    except ValueError:
        raise JwksUnavailable("the JWKS document is not JSON") from None
    if not isinstance(document, Mapping):
        raise JwksUnavailable("the JWKS document is not a JSON object")
    return document


def parse_jwks(document: Mapping[str, Any]) -> dict[str, jwt.PyJWK]:
    """The RS256 signing keys of a JWKS document, by ``kid``; other keys are ignored."""
    import jwt

    entries = document.get("keys")
    if not isinstance(entries, list):
        raise JwksUnavailable("the JWKS document has no 'keys' list")
    keys: dict[str, jwt.PyJWK] = {}
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        kid = entry.get("kid")
        if (
            not isinstance(kid, str)
            or entry.get("kty") != "RSA"
            or entry.get("use", "sig") != "sig"
            or entry.get("alg", ALGORITHM) != ALGORITHM
        ):
            continue
        try:
            keys[kid] = jwt.PyJWK(dict(entry), algorithm=ALGORITHM)
        except jwt.PyJWTError as error:
            log.warning("ignoring an unusable JWKS key %r: %s", kid, error)
    if not keys:
        raise JwksUnavailable("the JWKS document holds no RS256 signing key")
    return keys


def _numeric_date(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Unauthorized(f"the token's {name} claim is not a number")
    return float(value)


def _scopes_from_claims(claims: Mapping[str, Any]) -> frozenset[str]:
    scope = claims.get("scope")
    if isinstance(scope, str):
        return frozenset(scope.split())
    scp = claims.get("scp")
    if isinstance(scp, list):
        return frozenset(item for item in scp if isinstance(item, str))
    if isinstance(scp, str):
        # API Gateway renders list claims in the event as "[a b]"; some issuers send a plain string.
        return frozenset(scp.strip("[]").split())
    return frozenset()


def _principal(claims: Mapping[str, Any], scopes: frozenset[str]) -> Principal:
    client_id = _str_claim(claims, "client_id")
    if client_id is None:
        client_id = _str_claim(claims, "aud")  # an ID token's audience is the app client
    return Principal(
        subject=_str_claim(claims, "sub"),
        client_id=client_id,
        username=_str_claim(claims, "username") or _str_claim(claims, "cognito:username"),
        token_use=_str_claim(claims, "token_use"),
        scopes=scopes,
        claims=types.MappingProxyType(dict(claims)),
    )


def _str_claim(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    return value if isinstance(value, str) and value else None
