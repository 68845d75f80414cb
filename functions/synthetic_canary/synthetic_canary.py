"""Scheduled synthetic canary: the public API, called the way a machine client calls it.

Every run gets an access token by client_credentials from the user pool's token endpoint, sends the
model's golden infer request through API Gateway, reads the model's metadata (``GET /v2/models/{name}``,
a route the FastAPI app answers rather than the direct inference path), and writes two EMF metrics:
``Availability`` (1 when the answer matches the golden one within ``atol`` and the metadata matches the
manifest, else 0) and ``Latency`` of the infer call.

The client secret is read at run time with ``cognito-idp:DescribeUserPoolClient`` (scoped to the one
pool) rather than copied into Secrets Manager: Cognito stays the one place the secret lives, so a
rotation needs no second update and there is no copy to drift or to pay for.
"""

from __future__ import annotations

import base64
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import boto3
from onnx_lambda_helpers.emf import log, put_metrics
from onnx_lambda_helpers.golden import infer_mismatches, metadata_mismatches
from onnx_lambda_helpers.model_ref import ModelRef, load_manifest, parse_model_uri

NAMESPACE = "OnnxLambda/Canary"
#: A cached token is dropped this long before it expires.
TOKEN_MARGIN_SECONDS = 120


@dataclass(frozen=True, slots=True)
class CanarySettings:
    api_url: str
    token_url: str
    user_pool_id: str
    user_pool_region: str
    client_id: str
    scope: str
    model_uri: str
    manifest_version_id: str
    manifest_sha256: str
    stack_name: str
    timeout_seconds: float

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> CanarySettings:
        return cls(
            api_url=environ["API_URL"].rstrip("/"),
            token_url=environ["TOKEN_URL"],
            user_pool_id=environ["USER_POOL_ID"],
            user_pool_region=environ["USER_POOL_REGION"],
            client_id=environ["CLIENT_ID"],
            scope=environ.get("TOKEN_SCOPE", "inference/invoke"),
            model_uri=environ["MODEL_URI"],
            manifest_version_id=environ["MANIFEST_VERSION_ID"],
            manifest_sha256=environ["MANIFEST_SHA256"],
            stack_name=environ["STACK_NAME"],
            timeout_seconds=float(environ.get("HTTP_TIMEOUT_SECONDS", "10")),
        )


@dataclass(frozen=True, slots=True)
class Probe:
    available: bool
    latency_ms: float | None
    problems: list[str]


class HttpError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:300]}")
        self.status = status


# Per execution environment: a warm canary reuses its token and golden request.
_token_cache: dict[str, tuple[str, float]] = {}
_golden_cache: dict[ModelRef, dict[str, Any]] = {}


@cache
def _s3() -> Any:
    return boto3.client("s3")


@cache
def _cognito(region: str) -> Any:
    # The pool may live in another region: a secondary region's stack uses the primary's pool.
    return boto3.client("cognito-idp", region_name=region)


def handler(event: Mapping[str, Any], context: object) -> dict[str, Any]:
    settings = CanarySettings.from_environment(os.environ)
    try:
        probe = run_probe(settings)
    except Exception as exc:  # a canary that can't run reports unavailable, never crashes
        probe = Probe(available=False, latency_ms=None, problems=[f"{type(exc).__name__}: {exc}"])
    metrics: dict[str, tuple[float, str]] = {"Availability": (1.0 if probe.available else 0.0, "Count")}
    if probe.latency_ms is not None:
        metrics["Latency"] = (probe.latency_ms, "Milliseconds")
    put_metrics(NAMESPACE, {"Stack": settings.stack_name}, metrics, {"problems": probe.problems})
    log("INFO" if probe.available else "ERROR", "canary", available=probe.available,
        latency_ms=probe.latency_ms, problems=probe.problems)  # fmt: skip
    return {"available": probe.available, "latency_ms": probe.latency_ms, "problems": probe.problems}


def run_probe(settings: CanarySettings) -> Probe:
    manifest = _golden(settings)
    manifest_golden = manifest["golden"]
    model_url = f"{settings.api_url}/v2/models/{urllib.parse.quote(str(manifest['name']))}"
    url = f"{model_url}/infer"
    body = json.dumps(manifest_golden["infer_request"]).encode()
    for attempt in range(2):
        token = access_token(settings, fresh=attempt > 0)
        headers = {"authorization": f"Bearer {token}"}
        started = time.perf_counter()
        try:
            answer = _post_json(url, body, headers, settings.timeout_seconds)
        except HttpError as exc:
            latency_ms = (time.perf_counter() - started) * 1000
            if exc.status == 401 and attempt == 0:
                continue  # the token was revoked or the secret rotated: fetch a new one once
            return Probe(available=False, latency_ms=latency_ms, problems=[f"POST {url}: {exc}"])
        latency_ms = (time.perf_counter() - started) * 1000
        problems = infer_mismatches(manifest_golden["infer_response"], answer, float(manifest_golden.get("atol", 1e-4)))
        try:
            metadata = _get_json(model_url, headers, settings.timeout_seconds)
        except HttpError as exc:
            problems.append(f"GET {model_url}: {exc}")
        else:
            if isinstance(metadata, dict):
                problems.extend(metadata_mismatches(manifest, metadata))
            else:
                problems.append(f"GET {model_url}: expected a JSON object, got {metadata!r:.100}")
        return Probe(available=not problems, latency_ms=latency_ms, problems=problems)
    raise AssertionError("unreachable")  # pragma: no cover


def access_token(settings: CanarySettings, *, fresh: bool = False) -> str:
    """A client_credentials access token, cached until shortly before it expires."""
    cached = _token_cache.get(settings.client_id)
    if cached and not fresh and cached[1] > time.time():
        return cached[0]
    cognito = _cognito(settings.user_pool_region)
    secret = cognito.describe_user_pool_client(UserPoolId=settings.user_pool_id, ClientId=settings.client_id)[
        "UserPoolClient"
    ]["ClientSecret"]
    basic = base64.b64encode(f"{settings.client_id}:{secret}".encode()).decode()
    form = urllib.parse.urlencode({"grant_type": "client_credentials", "scope": settings.scope}).encode()
    answer = _post(
        settings.token_url,
        form,
        {"authorization": f"Basic {basic}", "content-type": "application/x-www-form-urlencoded"},
        settings.timeout_seconds,
    )
    token = answer.get("access_token")
    if not isinstance(token, str) or not token:
        raise ValueError("the token endpoint answered without an access_token")
    expires_in = float(answer.get("expires_in", 3600))
    _token_cache[settings.client_id] = (token, time.time() + max(0.0, expires_in - TOKEN_MARGIN_SECONDS))
    return token


def _golden(settings: CanarySettings) -> dict[str, Any]:
    ref = parse_model_uri(settings.model_uri, settings.manifest_version_id, settings.manifest_sha256)
    if ref not in _golden_cache:
        _golden_cache[ref] = load_manifest(_s3(), ref)
    return _golden_cache[ref]


def _post_json(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> Any:
    return _post(url, body, {"content-type": "application/json", **headers}, timeout)


def _get_json(url: str, headers: Mapping[str, str], timeout: float) -> Any:
    return _request("GET", url, None, headers, timeout)


def _post(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> Any:
    return _request("POST", url, body, headers, timeout)


def _request(method: str, url: str, body: bytes | None, headers: Mapping[str, str], timeout: float) -> Any:
    if not url.startswith(("https://", "http://")):
        raise ValueError(f"not an http(s) URL: {url!r}")
    request = urllib.request.Request(url, data=body, headers=dict(headers), method=method)  # noqa: S310 - scheme checked above
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - scheme checked above
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise HttpError(exc.code, exc.read().decode("utf-8", errors="replace")) from None
