"""The JWT authorizer's rules, against tokens forged here with locally generated RSA keys.

Tokens are assembled by hand (not with ``jwt.encode``) so that the test can build what an attacker
would: ``alg: none``, HS256 keyed with the public key, tampered payloads, odd claim types.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import math
import socket
import string
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from jwt.algorithms import RSAAlgorithm

from onnx_lambda import auth
from onnx_lambda.auth import (
    JwksUnavailable,
    JwtVerifier,
    Principal,
    bearer_token,
    principal_from_event,
    require_any_scope,
    verifier_from_settings,
)
from onnx_lambda.config import Settings
from onnx_lambda.errors import Forbidden, Unauthorized

ISSUER = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_TestPool"
JWKS_URL = "https://keys.invalid/eu-west-1_TestPool/.well-known/jwks.json"
CLIENT = "4example0client0id0abcdefg"
OTHER_CLIENT = "7other0client0id000000000"
NOW = 1_800_000_000.0
LEEWAY = 30
USER_SCOPE = "aws.cognito.signin.user.admin"
INVOKE_SCOPE = "inference/invoke"
ACCEPTED = ["inference/invoke", USER_SCOPE]


# --- keys, JWKS and token forging ------------------------------------------------------------


@cache
def rsa_key(name: str) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwk(name: str, kid: str) -> dict[str, Any]:
    entry = RSAAlgorithm.to_jwk(rsa_key(name).public_key(), as_dict=True)
    return {**entry, "kid": kid, "alg": "RS256", "use": "sig"}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


Signer = Callable[[bytes], bytes]


def rs256(name: str) -> Signer:
    return lambda message: rsa_key(name).sign(message, padding.PKCS1v15(), hashes.SHA256())


def hs256(secret: bytes) -> Signer:
    return lambda message: hmac.new(secret, message, hashlib.sha256).digest()


def unsigned(message: bytes) -> bytes:
    return b""


def forge(header: Mapping[str, Any], claims: Mapping[str, Any], signer: Signer) -> str:
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64url(signer(signing_input.encode('ascii')))}"


def access_claims(**overrides: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "sub": "5f1c0b6e-0000-4000-8000-000000000001",
        "iss": ISSUER,
        "client_id": CLIENT,
        "token_use": "access",
        "scope": USER_SCOPE,
        "auth_time": int(NOW) - 60,
        "iat": int(NOW) - 60,
        "exp": int(NOW) + 3600,
        "jti": "b7b6a1f8-0000-4000-8000-000000000002",
        "username": "dev",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not DROP}


def id_claims(**overrides: Any) -> dict[str, Any]:
    claims = access_claims(token_use="id", aud=CLIENT, client_id=DROP, scope=DROP, username=DROP)
    claims["cognito:username"] = "dev"
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not DROP}


DROP: Any = object()
HEADER = {"kid": "k1", "alg": "RS256"}


def token(claims: Mapping[str, Any] | None = None, header: Mapping[str, Any] | None = None, key: str = "k1") -> str:
    return forge(header or HEADER, access_claims() if claims is None else claims, rs256(key))


class FakeClock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Jwks:
    """The issuer's key endpoint, in-process: its document can change, go down and count fetches."""

    def __init__(self, *entries: dict[str, Any]) -> None:
        self.entries = list(entries)
        self.down = False
        self.fetches = 0

    def __call__(self, url: str) -> Mapping[str, Any]:
        assert url == JWKS_URL
        self.fetches += 1
        if self.down:
            raise JwksUnavailable("connection refused")
        return {"keys": [dict(entry) for entry in self.entries]}


def verifier(jwks: Jwks | None = None, clock: FakeClock | None = None, **kwargs: Any) -> JwtVerifier:
    return JwtVerifier(
        issuer=ISSUER,
        jwks_url=JWKS_URL,
        audience=[CLIENT],
        leeway_seconds=LEEWAY,
        fetch_jwks=jwks or Jwks(jwk("k1", "k1")),
        clock=clock or FakeClock(),
        **kwargs,
    )


def refused(verify: JwtVerifier, bearer: str, reason: str) -> Unauthorized:
    with pytest.raises(Unauthorized, match=reason) as caught:
        verify.verify(bearer)
    assert bearer not in caught.value.message
    return caught.value


# --- the Authorization header ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing Authorization"),
        ("", "missing Authorization"),
        ("   ", "missing Authorization"),
        ("Basic ZGV2OnNlY3JldA==", "scheme must be Bearer"),
        ("Token abc.def.ghi", "scheme must be Bearer"),
        ("abc.def.ghi", "scheme must be Bearer"),
        ("Bearer", "empty"),
        ("Bearer    ", "empty"),
    ],
)
def test_bearer_token_refuses_missing_or_other_schemes(header: str | None, reason: str) -> None:
    with pytest.raises(Unauthorized, match=reason):
        bearer_token(header)


def test_bearer_token_returns_the_token_whatever_the_scheme_case() -> None:
    assert bearer_token("Bearer abc.def.ghi") == "abc.def.ghi"
    assert bearer_token("bearer  abc.def.ghi ") == "abc.def.ghi"


# --- accepted tokens -------------------------------------------------------------------------


def test_a_valid_access_token_gives_its_principal() -> None:
    principal = verifier().verify(token())
    assert principal.subject == "5f1c0b6e-0000-4000-8000-000000000001"
    assert principal.client_id == CLIENT
    assert principal.username == "dev"
    assert principal.token_use == "access"
    assert principal.scopes == {USER_SCOPE}
    assert principal.claims["jti"] == "b7b6a1f8-0000-4000-8000-000000000002"
    assert principal.log_context() == {"sub": principal.subject, "client_id": CLIENT, "token_use": "access"}
    require_any_scope(principal, ACCEPTED)


def test_a_valid_id_token_is_verified_but_carries_no_scope() -> None:
    principal = verifier().verify(token(id_claims()))
    assert principal.token_use == "id"
    assert principal.client_id == CLIENT
    assert principal.username == "dev"
    assert principal.scopes == frozenset()


def test_scopes_come_from_scope_or_scp() -> None:
    machine = verifier().verify(token(access_claims(scope="inference/invoke other/thing", username=DROP)))
    assert machine.scopes == {"inference/invoke", "other/thing"}
    assert machine.username is None
    listed = verifier().verify(token(access_claims(scope=DROP, scp=["inference/invoke"])))
    assert listed.scopes == {"inference/invoke"}


def test_an_aud_list_is_accepted_when_it_names_one_of_our_clients() -> None:
    verifier().verify(token(id_claims(aud=["someone-else", CLIENT])))


@pytest.mark.parametrize("skew", [-LEEWAY + 1, 0, LEEWAY - 1])
def test_clock_skew_within_the_leeway_is_tolerated(skew: int) -> None:
    claims = access_claims(exp=int(NOW) - skew, nbf=int(NOW) + skew, iat=int(NOW) + skew)
    verifier().verify(token(claims))


# --- refused tokens: every 401 of the issue ------------------------------------------------------


@pytest.mark.parametrize(
    "garbage",
    ["garbage", "a.b.c", "..", "x" * 100, "eyJhbGciOiJSUzI1NiJ9.e30", "ünïcödé.a.b", "eyJ9.eyJ9.eyJ9"],
)
def test_garbage_is_refused(garbage: str) -> None:
    refused(verifier(), garbage, "not a well-formed JWT")


def test_a_header_that_is_not_an_object_is_refused() -> None:
    bad = f"{b64url(b'[1]')}.{b64url(b'{}')}.{b64url(b'sig')}"
    refused(verifier(), bad, "not a well-formed JWT")


@pytest.mark.parametrize("alg", ["none", "None", "NONE", ""])
def test_alg_none_is_refused(alg: str) -> None:
    refused(verifier(), forge({"kid": "k1", "alg": alg}, access_claims(), unsigned), "must be signed with RS256")


@pytest.mark.parametrize(
    "public_format",
    [serialization.PublicFormat.SubjectPublicKeyInfo, serialization.PublicFormat.PKCS1],
)
def test_hs256_signed_with_the_public_key_as_secret_is_refused(public_format: serialization.PublicFormat) -> None:
    public_pem = rsa_key("k1").public_key().public_bytes(serialization.Encoding.PEM, public_format)
    forged = forge({"kid": "k1", "alg": "HS256"}, access_claims(), hs256(public_pem))
    refused(verifier(), forged, "must be signed with RS256")


@pytest.mark.parametrize("alg", ["RS384", "RS512", "PS256", "ES256", "rs256"])
def test_other_algorithms_are_refused(alg: str) -> None:
    refused(verifier(), token(header={"kid": "k1", "alg": alg}), "must be signed with RS256")


def test_a_token_signed_by_another_rsa_key_under_the_same_kid_is_refused() -> None:
    refused(verifier(), token(key="attacker"), "signature is invalid")


def test_a_token_without_a_kid_is_refused() -> None:
    refused(verifier(), token(header={"alg": "RS256"}), "no signing key")
    refused(verifier(), token(header={"alg": "RS256", "kid": 7}), "no signing key|not a well-formed")


def test_an_expired_token_is_refused() -> None:
    refused(verifier(), token(access_claims(exp=int(NOW) - LEEWAY)), "expired")
    refused(verifier(), token(access_claims(exp=int(NOW) - 86_400)), "expired")


def test_a_token_without_exp_is_refused() -> None:
    refused(verifier(), token(access_claims(exp=DROP)), "no expiry")


@pytest.mark.parametrize("bad", ["1900000000", True, [1900000000], {"t": 1}, math.nan, math.inf])
def test_a_time_claim_that_is_not_a_finite_number_is_refused(bad: Any) -> None:
    refused(verifier(), token(access_claims(exp=bad)), "not a number")
    refused(verifier(), token(access_claims(nbf=bad)), "not a number")


def test_nbf_in_the_future_is_refused() -> None:
    refused(verifier(), token(access_claims(nbf=int(NOW) + LEEWAY + 1)), "not valid yet")


def test_iat_in_the_future_is_refused() -> None:
    refused(verifier(), token(access_claims(iat=int(NOW) + LEEWAY + 1)), "issued in the future")


@pytest.mark.parametrize(
    "issuer",
    [
        "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_OtherPool",
        ISSUER + "/",
        ISSUER.upper(),
        "http://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_TestPool",
        DROP,
        [ISSUER],
    ],
)
def test_a_wrong_issuer_is_refused(issuer: Any) -> None:
    refused(verifier(), token(access_claims(iss=issuer)), "not issued by this service's issuer")


def test_a_wrong_client_id_is_refused() -> None:
    refused(verifier(), token(access_claims(client_id=OTHER_CLIENT)), "valid client_id")
    refused(verifier(), token(access_claims(client_id=DROP)), "valid client_id")
    refused(verifier(), token(access_claims(client_id=[CLIENT])), "valid client_id")


def test_a_wrong_audience_is_refused() -> None:
    refused(verifier(), token(id_claims(aud=OTHER_CLIENT)), "valid audience")
    refused(verifier(), token(id_claims(aud=[])), "valid audience")


def test_aud_is_evaluated_before_client_id() -> None:
    # API Gateway checks client_id only when aud is absent.
    refused(verifier(), token(access_claims(aud=OTHER_CLIENT)), "valid audience")


def test_a_tampered_payload_is_refused() -> None:
    header, _, signature = token().split(".")
    elevated = b64url(json.dumps(access_claims(scope="inference/invoke admin")).encode())
    refused(verifier(), f"{header}.{elevated}.{signature}", "signature is invalid")


def test_an_oversized_token_is_refused_before_any_work() -> None:
    jwks = Jwks(jwk("k1", "k1"))
    padded = token(access_claims(padding="x" * 9000))
    error = refused(verifier(jwks), padded, "larger than 8192 bytes")
    assert jwks.fetches == 0
    assert "x" * 100 not in error.message


def test_jwks_down_fails_closed_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    jwks = Jwks(jwk("k1", "k1"))
    jwks.down = True
    valid = token()
    with caplog.at_level(logging.WARNING, logger="onnx_lambda.auth"):
        refused(verifier(jwks), valid, "signing keys are unavailable")
    assert [record.levelname for record in caplog.records] == ["WARNING"]
    assert "JWKS unavailable" in caplog.text
    assert JWKS_URL in caplog.text
    assert valid not in caplog.text
    assert valid.split(".")[2] not in caplog.text


def test_the_default_fetcher_fails_closed_when_nothing_listens(caplog: pytest.LogCaptureFixture) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    nothing = JwtVerifier(
        issuer=ISSUER, jwks_url=f"http://127.0.0.1:{port}/jwks.json", audience=[CLIENT], clock=FakeClock()
    )
    with (
        caplog.at_level(logging.WARNING, logger="onnx_lambda.auth"),
        pytest.raises(Unauthorized, match="signing keys are unavailable"),
    ):
        nothing.verify(token())
    assert "URLError" in caplog.text


@pytest.mark.parametrize(
    "document",
    [
        {},
        {"keys": "nope"},
        {"keys": []},
        {"keys": [{"kid": "k1", "kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]},
        {"keys": [{**jwk("k1", "k1"), "alg": "HS256"}]},
        {"keys": [{**jwk("k1", "k1"), "use": "enc"}]},
        {"keys": [{"kid": "k1", "kty": "RSA", "n": "!!", "e": "AQAB"}]},
    ],
)
def test_a_jwks_without_a_usable_rs256_key_fails_closed(document: dict[str, Any]) -> None:
    refused(_with_document(document), token(), "unavailable|unknown key")


def _with_document(document: dict[str, Any]) -> JwtVerifier:
    return JwtVerifier(
        issuer=ISSUER, jwks_url=JWKS_URL, audience=[CLIENT], fetch_jwks=lambda url: document, clock=FakeClock()
    )


# --- scopes (403) --------------------------------------------------------------------------


def test_a_valid_token_without_an_accepted_scope_is_forbidden() -> None:
    principal = verifier().verify(token(access_claims(scope="openid profile")))
    with pytest.raises(Forbidden, match=r"none of the scopes this route accepts: aws\.cognito\.signin\.user\.admin"):
        require_any_scope(principal, ACCEPTED)


def test_a_machine_only_deployment_forbids_user_sign_in_tokens() -> None:
    principal = verifier().verify(token())
    with pytest.raises(Forbidden):
        require_any_scope(principal, ["inference/invoke"])
    require_any_scope(verifier().verify(token(access_claims(scope=INVOKE_SCOPE))), ["inference/invoke"])


def test_an_id_token_is_refused_on_a_scoped_route() -> None:
    principal = verifier().verify(token(id_claims()))
    with pytest.raises(Forbidden, match="ID tokens carry no scopes"):
        require_any_scope(principal, ACCEPTED)


def test_a_route_without_scopes_accepts_any_valid_token() -> None:
    require_any_scope(verifier().verify(token(id_claims())), [])


# --- JWKS caching, rotation and its rate limit ----------------------------------------------


def test_keys_are_fetched_once_and_cached() -> None:
    jwks = Jwks(jwk("k1", "k1"))
    verify = verifier(jwks)
    for n in range(5):
        verify.verify(token(access_claims(jti=f"j{n}")))
    assert jwks.fetches == 1


def test_an_unknown_kid_refetches_once_and_picks_up_a_rotated_key() -> None:
    jwks, clock = Jwks(jwk("k1", "k1")), FakeClock()
    verify = verifier(jwks, clock)
    verify.verify(token())
    clock.now += 31
    jwks.entries.append(jwk("k2", "k2"))  # the issuer rotates in a new key
    principal = verify.verify(token(header={"kid": "k2", "alg": "RS256"}, key="k2"))
    assert principal.subject is not None
    assert jwks.fetches == 2


def test_unknown_kid_refetches_are_rate_limited() -> None:
    jwks, clock = Jwks(jwk("k1", "k1")), FakeClock()
    verify = verifier(jwks, clock, min_refetch_interval_seconds=30.0)
    verify.verify(token())
    assert jwks.fetches == 1
    for n in range(20):  # a flood of forged kids right after the first fetch
        refused(verify, token(header={"kid": f"forged-{n}", "alg": "RS256"}), "unknown key")
    assert jwks.fetches == 1
    clock.now += 30
    refused(verify, token(header={"kid": "forged-x", "alg": "RS256"}), "unknown key")
    assert jwks.fetches == 2
    for n in range(5):
        refused(verify, token(header={"kid": f"again-{n}", "alg": "RS256"}), "unknown key")
    assert jwks.fetches == 2


def test_a_rotated_key_waits_for_the_rate_limit() -> None:
    jwks, clock = Jwks(jwk("k1", "k1")), FakeClock()
    verify = verifier(jwks, clock)
    verify.verify(token())
    jwks.entries.append(jwk("k2", "k2"))
    rotated = token(header={"kid": "k2", "alg": "RS256"}, key="k2")
    refused(verify, rotated, "unknown key")
    clock.now += 30
    verify.verify(rotated)
    assert jwks.fetches == 2


def test_a_key_removed_from_the_jwks_stops_vouching_for_cached_tokens() -> None:
    jwks, clock = Jwks(jwk("k1", "k1")), FakeClock()
    verify = verifier(jwks, clock)
    old = token()
    verify.verify(old)
    clock.now += 31
    jwks.entries = [jwk("k2", "k2")]  # k1 retired
    verify.verify(token(header={"kid": "k2", "alg": "RS256"}, key="k2"))
    refused(verify, old, "unknown key")


def test_jwks_recovery_after_an_outage_waits_for_the_rate_limit() -> None:
    jwks, clock = Jwks(jwk("k1", "k1")), FakeClock()
    jwks.down = True
    verify = verifier(jwks, clock)
    refused(verify, token(), "unavailable")
    jwks.down = False
    refused(verify, token(), "unknown key")  # no new attempt within the interval
    assert jwks.fetches == 1
    clock.now += 30
    verify.verify(token())
    assert jwks.fetches == 2


# --- the verified-token cache ------------------------------------------------------------------


def test_a_repeated_token_is_served_from_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    decodes = []
    real_decode = jwt.decode

    def counting_decode(*args: Any, **kwargs: Any) -> Any:
        decodes.append(1)
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting_decode)
    verify = verifier()
    bearer = token()
    first = verify.verify(bearer)
    assert verify.verify(bearer) is first
    assert len(decodes) == 1


def test_a_cached_token_still_expires() -> None:
    clock = FakeClock()
    verify = verifier(clock=clock)
    bearer = token(access_claims(exp=int(NOW) + 60))
    verify.verify(bearer)
    clock.now = NOW + 60 + LEEWAY
    refused(verify, bearer, "expired")


def test_a_refused_token_is_not_cached() -> None:
    clock = FakeClock(NOW - 3600)
    verify = verifier(clock=clock)
    early = token(access_claims(nbf=int(NOW)))
    refused(verify, early, "not valid yet")
    clock.now = NOW
    verify.verify(early)


def test_the_token_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "TOKEN_CACHE_SIZE", 8)
    verify = verifier()
    bearers = [token(access_claims(jti=f"j{n}")) for n in range(20)]
    for bearer in bearers:
        verify.verify(bearer)
    assert len(verify._verified) <= 8
    verify.verify(bearers[0])  # evicted, verified again


# --- claims API Gateway verified (Lambda) ------------------------------------------------------


def apigw_event(authorizer: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "POST /v1/embeddings",
        "rawPath": "/v1/embeddings",
        "headers": {"authorization": "Bearer eyJ.redacted.sig"},
        "requestContext": {
            "http": {"method": "POST", "path": "/v1/embeddings"},
            "requestId": "abc",
            "stage": "$default",
        },
        "isBase64Encoded": False,
    }
    if authorizer is not None:
        event["requestContext"]["authorizer"] = authorizer
    return event


def test_principal_from_an_event_with_jwt_claims() -> None:
    claims = {
        "sub": "5f1c0b6e",
        "client_id": CLIENT,
        "token_use": "access",
        "scope": "inference/invoke",
        "exp": "1800003600",
        "iss": ISSUER,
    }
    event = apigw_event({"jwt": {"claims": claims, "scopes": ["inference/invoke"]}})
    principal = principal_from_event(event)
    assert principal == Principal(
        subject="5f1c0b6e",
        client_id=CLIENT,
        username=None,
        token_use="access",
        scopes=frozenset({"inference/invoke"}),
        claims=principal.claims,
    )
    assert principal.claims["exp"] == "1800003600"
    require_any_scope(principal, ACCEPTED)


def test_event_scopes_fall_back_to_the_scope_claim() -> None:
    # API Gateway sets ``scopes`` to null on routes without authorization scopes.
    claims = {"sub": "u", "client_id": CLIENT, "scope": "aws.cognito.signin.user.admin", "username": "dev"}
    principal = principal_from_event(apigw_event({"jwt": {"claims": claims, "scopes": None}}))
    assert principal.scopes == {USER_SCOPE}
    assert principal.username == "dev"
    listed = principal_from_event(apigw_event({"jwt": {"claims": {"sub": "u", "scp": "[a/b c/d]"}}}))
    assert listed.scopes == {"a/b", "c/d"}


def test_an_id_token_event_is_forbidden_on_a_scoped_route() -> None:
    claims = {"sub": "u", "aud": CLIENT, "token_use": "id", "cognito:username": "dev"}
    principal = principal_from_event(apigw_event({"jwt": {"claims": claims, "scopes": None}}))
    assert principal.client_id == CLIENT
    with pytest.raises(Forbidden):
        require_any_scope(principal, ACCEPTED)


@pytest.mark.parametrize(
    "authorizer",
    [
        None,
        {},
        {"jwt": None},
        {"jwt": {"scopes": ["inference/invoke"]}},
        {"jwt": {"claims": {}, "scopes": None}},
        {"lambda": {"sub": "u"}},
        {"iam": {"accessKey": "x"}},
        "jwt",
    ],
)
def test_an_event_without_verified_claims_is_refused(authorizer: Any) -> None:
    with pytest.raises(Unauthorized, match="no verified token claims"):
        principal_from_event(apigw_event(authorizer))


def test_an_event_without_request_context_is_refused() -> None:
    with pytest.raises(Unauthorized):
        principal_from_event({})
    with pytest.raises(Unauthorized):
        principal_from_event({"requestContext": "x"})


# --- configuration ---------------------------------------------------------------------------


def test_verifier_from_settings_uses_the_separate_jwks_url() -> None:
    settings = Settings(
        models=[{"uri": "file:///model.onnx"}],  # type: ignore[list-item]
        auth_mode="jwt",
        jwt_issuer=ISSUER,
        jwt_jwks_url=JWKS_URL,
        jwt_audience=[CLIENT],
    )
    jwks = Jwks(jwk("k1", "k1"))
    verify = verifier_from_settings(settings, fetch_jwks=jwks)
    assert verify.issuer == ISSUER
    with pytest.raises(Unauthorized, match="expired"):  # the real clock is far from NOW - 1 year
        verify.verify(token(access_claims(exp=1_000_000_000)))
    assert jwks.fetches == 1


@pytest.mark.parametrize("missing", [{"jwt_issuer": None}, {"jwt_audience": []}], ids=["no issuer", "no audience"])
def test_verifier_from_settings_refuses_an_incomplete_configuration(missing: dict[str, Any]) -> None:
    values: dict[str, Any] = {"jwt_issuer": ISSUER, "jwt_audience": [CLIENT], **missing}
    settings = Settings(models=[{"uri": "file:///model.onnx"}], auth_mode="jwt", **values)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="ONNX_LAMBDA_JWT_"):
        verifier_from_settings(settings)


def test_the_verifier_needs_an_issuer_and_an_audience() -> None:
    with pytest.raises(ValueError, match="issuer"):
        JwtVerifier(issuer="", jwks_url=JWKS_URL, audience=[CLIENT])
    with pytest.raises(ValueError, match="audience"):
        JwtVerifier(issuer=ISSUER, jwks_url=JWKS_URL, audience=[])


# --- property: no mutation is accepted unless it is still valid ---------------------------------

B64URL = string.ascii_letters + string.digits + "-_"
BOUNDARIES = (-86_400, -LEEWAY - 1, -LEEWAY, -LEEWAY + 1, 0, LEEWAY - 1, LEEWAY, LEEWAY + 1, 3600)
TIME_VALUES = st.one_of(
    st.sampled_from([int(NOW) + d for d in BOUNDARIES]),
    st.sampled_from([NOW + d + 0.5 for d in BOUNDARIES]),
    st.sampled_from([None, True, "1800000000", [int(NOW)], math.nan, math.inf, -math.inf]),
    st.floats(allow_nan=True, allow_infinity=True),
)
CLAIM_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "iss": st.sampled_from([ISSUER, ISSUER + "/", ISSUER.replace("TestPool", "Other"), None, [ISSUER]]),
    "aud": st.sampled_from([CLIENT, OTHER_CLIENT, [CLIENT], [OTHER_CLIENT], [], None, 3]),
    "client_id": st.sampled_from([CLIENT, OTHER_CLIENT, [CLIENT], None, ""]),
    "exp": TIME_VALUES,
    "nbf": TIME_VALUES,
    "iat": TIME_VALUES,
    "scope": st.sampled_from([USER_SCOPE, "", "openid", 7, None]),
    "token_use": st.sampled_from(["access", "id", "refresh"]),
}
# Mostly one or two claims changed under a correct header and signature, so that a good share of
# the examples sit right at a rule's boundary; the rest attack the header, key and bytes.
claim_mutations = st.lists(
    st.sampled_from(sorted(CLAIM_VALUES)).flatmap(
        lambda name: st.tuples(st.just(name), st.just(DROP) | CLAIM_VALUES[name] | CLAIM_VALUES[name])
    ),
    max_size=3,
).map(dict)
header_mutations: st.SearchStrategy[dict[str, Any]] = (
    st.just({})
    | st.just({})
    | st.just({})
    | st.fixed_dictionaries(
        {},
        optional={
            "alg": st.sampled_from(["RS256", "none", "HS256", "RS512", "PS256", "ES256", "rs256", "", None, DROP]),
            "kid": st.sampled_from(["k1", "k2", "", None, 1, DROP]),
        },
    )
)
signers = st.sampled_from(["k1"] * 5 + ["attacker", "hs256-public", "none"])
byte_flips = st.none() | st.none() | st.none() | st.tuples(st.integers(min_value=0), st.sampled_from(B64URL))


def expected_valid(header: Mapping[str, Any], claims: Mapping[str, Any], signer: str) -> bool:
    """The authorizer's rules, written out independently of auth.py."""

    def number(name: str) -> float | bool | None:
        value = claims.get(name)
        if value is None:
            return None
        if type(value) not in (int, float) or not math.isfinite(value):
            return False
        return float(value)

    if header.get("alg") != "RS256" or header.get("kid") != "k1" or signer != "k1":
        return False
    if claims.get("iss") != ISSUER:
        return False
    if "aud" in claims:
        aud = claims["aud"]
        if not (aud == CLIENT or (isinstance(aud, list) and CLIENT in aud)):
            return False
    elif claims.get("client_id") != CLIENT:
        return False
    exp, nbf, iat = number("exp"), number("nbf"), number("iat")
    if exp is None or exp is False or exp + LEEWAY <= NOW:
        return False
    if nbf is False or (nbf is not None and nbf - LEEWAY > NOW):
        return False
    return not (iat is False or (iat is not None and iat - LEEWAY > NOW))


def sign_as(signer: str) -> Signer:
    if signer == "hs256-public":
        pem = (
            rsa_key("k1")
            .public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        return hs256(pem)
    if signer == "none":
        return unsigned
    return rs256(signer)


def decoded_segments(compact: str) -> list[bytes] | None:
    try:
        return [base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)) for part in compact.split(".")]
    except ValueError:
        return None


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(header_mutations, claim_mutations, signers, byte_flips)
def test_mutated_tokens_are_accepted_only_when_still_valid(
    header_overrides: dict[str, Any],
    claim_overrides: dict[str, Any],
    signer: str,
    flip: tuple[int, str] | None,
) -> None:
    header = {k: v for k, v in {**HEADER, **header_overrides}.items() if v is not DROP}
    claims = {k: v for k, v in {**access_claims(), **claim_overrides}.items() if v is not DROP}
    valid = expected_valid(header, claims, signer)
    compact = forge(header, claims, sign_as(signer))
    if flip is not None:
        positions = [i for i, char in enumerate(compact) if char != "."]
        position, replacement = positions[flip[0] % len(positions)], flip[1]
        mutated = compact[:position] + replacement + compact[position + 1 :]
        if mutated != compact:
            signature_starts = compact.rindex(".") + 1
            # A changed header or payload changes the signed bytes; a changed signature character
            # may only touch base64's unused trailing bits, leaving the signature the same.
            still_same = position >= signature_starts and decoded_segments(mutated) == decoded_segments(compact)
            valid = valid and still_same
            compact = mutated
    event("valid" if valid else "invalid")
    verify = verifier()
    try:
        principal = verify.verify(compact)
    except Unauthorized:
        assert not valid, f"a valid token was refused: {header} {claims}"
    else:
        assert valid, f"an invalid token was accepted: {header} {claims} {signer} {flip}"
        assert principal.claims["iss"] == ISSUER


# --- the JWKS endpoint over real HTTP (the default fetcher) ----------------------------------------


class JwksEndpoint:
    """A real HTTP server on loopback that answers every GET with one body, and keeps the requests' headers."""

    def __init__(self) -> None:
        self.body = b"{}"
        self.seen: list[dict[str, str]] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                endpoint.seen.append(dict(self.headers.items()))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(endpoint.body)))
                self.end_headers()
                self.wfile.write(endpoint.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint() -> Iterator[JwksEndpoint]:
    served = JwksEndpoint()
    yield served
    served.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_default_fetcher_reads_the_document_and_asks_for_json(endpoint: JwksEndpoint) -> None:
    document = {"keys": [jwk("k1", "k1")]}
    endpoint.body = json.dumps(document).encode()
    assert auth.fetch_jwks_over_http(endpoint.url) == document
    (headers,) = endpoint.seen
    assert headers["Accept"] == "application/json"


def test_a_verifier_with_the_default_fetcher_verifies_against_the_served_keys(endpoint: JwksEndpoint) -> None:
    endpoint.body = json.dumps({"keys": [jwk("k1", "k1")]}).encode()
    verify = JwtVerifier(issuer=ISSUER, jwks_url=endpoint.url, audience=[CLIENT], clock=FakeClock())
    assert verify.verify(token()).subject == access_claims()["sub"]


def padded_document(size: int) -> bytes:
    """A JWKS document of exactly ``size`` bytes whose last byte closes it: any truncation is not JSON."""
    head = json.dumps({"keys": [jwk("k1", "k1")], "padding": ""}).encode()[:-2]
    return head + b" " * (size - len(head) - 2) + b'"}'


def test_a_jwks_document_of_the_maximum_size_is_read_whole(endpoint: JwksEndpoint) -> None:
    endpoint.body = padded_document(auth.JWKS_MAX_BYTES)
    assert len(endpoint.body) == auth.JWKS_MAX_BYTES
    assert auth.fetch_jwks_over_http(endpoint.url)["keys"] == [jwk("k1", "k1")]


def test_a_jwks_document_past_the_maximum_size_is_refused(endpoint: JwksEndpoint) -> None:
    endpoint.body = padded_document(auth.JWKS_MAX_BYTES + 1)
    with pytest.raises(JwksUnavailable, match="too large"):
        auth.fetch_jwks_over_http(endpoint.url)


@pytest.mark.parametrize(
    ("body", "reason"),
    [(b"<html>sign in</html>", "not JSON"), (b"[1, 2]", "not a JSON object"), (b'"keys"', "not a JSON object")],
)
def test_a_jwks_document_that_is_not_a_json_object_is_refused(endpoint: JwksEndpoint, body: bytes, reason: str) -> None:
    endpoint.body = body
    with pytest.raises(JwksUnavailable, match=reason):
        auth.fetch_jwks_over_http(endpoint.url)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://keys.invalid/jwks.json", "jwks.json", ""])
def test_the_default_fetcher_refuses_urls_that_are_not_http(url: str) -> None:
    with pytest.raises(JwksUnavailable, match=r"must be http\(s\)"):
        auth.fetch_jwks_over_http(url)


@pytest.mark.parametrize("scheme", ["https", "http"])
def test_https_and_http_urls_are_fetched(scheme: str) -> None:
    """Both schemes get as far as the network: here nothing listens, so the failure is the connection's."""
    with pytest.raises(JwksUnavailable) as caught:
        auth.fetch_jwks_over_http(f"{scheme}://127.0.0.1:{free_port()}/jwks.json")
    assert "URLError" in str(caught.value)


def test_a_jwks_endpoint_that_never_answers_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """A listener that accepts and never answers: the fetch gives up after JWKS_TIMEOUT_SECONDS."""
    monkeypatch.setattr(auth, "JWKS_TIMEOUT_SECONDS", 0.2)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        with pytest.raises(JwksUnavailable, match="timed out"):
            auth.fetch_jwks_over_http(f"http://127.0.0.1:{port}/jwks.json")


# --- the JWKS document: which entries are keys ----------------------------------------------------


def test_keys_without_use_or_alg_are_rs256_signing_keys() -> None:
    """RFC 7517: ``use`` and ``alg`` are optional; Cognito sends both, other issuers may not."""
    bare = {k: v for k, v in jwk("k1", "k1").items() if k not in ("use", "alg")}
    assert sorted(auth.parse_jwks({"keys": [bare]})) == ["k1"]
    verify = JwtVerifier(
        issuer=ISSUER, jwks_url=JWKS_URL, audience=[CLIENT], fetch_jwks=lambda url: {"keys": [bare]}, clock=FakeClock()
    )
    verify.verify(token())


@pytest.mark.parametrize(
    "skipped",
    [
        "not an object",
        {"kty": "RSA", "n": "AQAB", "e": "AQAB"},  # no kid
        {"kid": "k0", "kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"},
        {**jwk("k0", "k0"), "use": "enc"},
        {**jwk("k0", "k0"), "alg": "RS512"},
        {"kid": "k0", "kty": "RSA", "n": "!!", "e": "AQAB"},  # unusable: logged and skipped
    ],
)
def test_an_unusable_entry_is_skipped_and_the_keys_after_it_are_kept(skipped: Any) -> None:
    keys = auth.parse_jwks({"keys": [skipped, jwk("k1", "k1"), jwk("k2", "k2")]})
    assert sorted(keys) == ["k1", "k2"]


@pytest.mark.parametrize(
    ("document", "reason"),
    [({}, "no 'keys' list"), ({"keys": {"k1": {}}}, "no 'keys' list"), ({"keys": []}, "no RS256 signing key")],
)
def test_a_document_without_keys_says_what_is_missing(document: dict[str, Any], reason: str) -> None:
    with pytest.raises(JwksUnavailable, match=reason):
        auth.parse_jwks(document)


# --- boundaries the rules name -----------------------------------------------------------------


def test_the_default_leeway_is_30_seconds() -> None:
    """API Gateway's JWT authorizer allows 30 s of clock skew on exp, nbf and iat (and so does the default)."""
    default = JwtVerifier(
        issuer=ISSUER, jwks_url=JWKS_URL, audience=[CLIENT], fetch_jwks=Jwks(jwk("k1", "k1")), clock=FakeClock()
    )
    default.verify(token(access_claims(exp=int(NOW) - 29)))
    with pytest.raises(Unauthorized, match="expired"):
        default.verify(token(access_claims(exp=int(NOW) - 30)))


def test_nbf_exactly_the_leeway_ahead_is_accepted() -> None:
    verifier().verify(token(access_claims(nbf=int(NOW) + LEEWAY, iat=int(NOW) + LEEWAY)))


def test_a_token_of_exactly_the_size_limit_is_verified() -> None:
    bearer = token()
    verifier(max_token_bytes=len(bearer)).verify(bearer)
    refused(verifier(max_token_bytes=len(bearer) - 1), bearer, f"larger than {len(bearer) - 1} bytes")


def test_an_empty_kid_names_no_key() -> None:
    refused(verifier(), token(header={"kid": "", "alg": "RS256"}), "no signing key")


def test_a_payload_that_is_not_json_is_not_a_well_formed_jwt() -> None:
    header = b64url(json.dumps(HEADER).encode())
    payload = b64url(b"not json")
    signature = b64url(rs256("k1")(f"{header}.{payload}".encode()))
    refused(verifier(), f"{header}.{payload}.{signature}", "the token is not a well-formed JWT")


def test_a_cached_token_is_not_served_at_its_exp_without_leeway() -> None:
    """The cache keeps a token until its ``exp``; at ``exp`` the rules decide again (and, with no leeway, refuse)."""
    clock = FakeClock()
    verify = JwtVerifier(
        issuer=ISSUER,
        jwks_url=JWKS_URL,
        audience=[CLIENT],
        leeway_seconds=0,
        fetch_jwks=Jwks(jwk("k1", "k1")),
        clock=clock,
    )
    bearer = token(access_claims(exp=int(NOW) + 60))
    verify.verify(bearer)
    clock.now = NOW + 60
    refused(verify, bearer, "expired")


def test_the_token_cache_never_holds_more_than_its_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "TOKEN_CACHE_SIZE", 8)
    verify = verifier()
    for n in range(20):
        verify.verify(token(access_claims(jti=f"j{n}")))
        assert len(verify._verified) <= 8


def test_a_full_cache_drops_tokens_expiring_now_before_live_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "TOKEN_CACHE_SIZE", 4)
    clock = FakeClock()
    verify = verifier(clock=clock)
    live = [token(access_claims(jti=f"live{n}")) for n in range(3)]
    for bearer in live:
        verify.verify(bearer)
    verify.verify(token(access_claims(jti="short", exp=int(NOW) + 10)))
    clock.now = NOW + 10  # the short token's exp: it can no longer be served from the cache
    verify.verify(token(access_claims(jti="new")))
    cached = {principal.claims["jti"] for _, principal in verify._verified.values()}
    assert cached == {"live0", "live1", "live2", "new"}


# --- API Gateway's claims: what it verified is what counts -----------------------------------------


def test_the_event_scopes_api_gateway_verified_are_the_principals_scopes() -> None:
    claims = {"sub": "u", "client_id": CLIENT, "scope": "openid"}
    principal = principal_from_event(apigw_event({"jwt": {"claims": claims, "scopes": ["inference/invoke"]}}))
    assert principal.scopes == {"inference/invoke"}


def test_scp_rendered_as_a_bracketed_string_keeps_every_scope() -> None:
    principal = principal_from_event(apigw_event({"jwt": {"claims": {"sub": "u", "scp": "[a/b c/X]"}}}))
    assert principal.scopes == {"a/b", "c/X"}


def test_claims_that_are_not_non_empty_strings_are_absent_from_the_principal() -> None:
    claims = {"sub": 42, "client_id": "", "aud": CLIENT, "username": ["dev"], "token_use": None}
    principal = principal_from_event(apigw_event({"jwt": {"claims": claims}}))
    assert (principal.subject, principal.client_id, principal.username, principal.token_use) == (
        None,
        CLIENT,
        None,
        None,
    )


# --- configuration ---------------------------------------------------------------------------


def test_verifier_from_settings_needs_the_issuer_even_with_a_jwks_url() -> None:
    settings = Settings(
        models=[{"uri": "file:///model.onnx"}],  # type: ignore[list-item]
        auth_mode="jwt",
        jwt_jwks_url=JWKS_URL,
        jwt_audience=[CLIENT],
    )
    with pytest.raises(ValueError, match="ONNX_LAMBDA_JWT_ISSUER"):
        verifier_from_settings(settings)


def test_verifier_from_settings_applies_the_configured_leeway() -> None:
    settings = Settings(
        models=[{"uri": "file:///model.onnx"}],  # type: ignore[list-item]
        auth_mode="jwt",
        jwt_issuer=ISSUER,
        jwt_jwks_url=JWKS_URL,
        jwt_audience=[CLIENT],
        jwt_leeway_seconds=0,
    )
    verify = verifier_from_settings(settings, fetch_jwks=Jwks(jwk("k1", "k1")))
    now = int(time.time())
    with pytest.raises(Unauthorized, match="expired"):
        verify.verify(token(access_claims(iat=now - 60, exp=now - 5)))
