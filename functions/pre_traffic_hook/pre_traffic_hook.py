"""CodeDeploy BeforeAllowTraffic hook: a new version gets traffic only if it answers like its manifest says.

It reads the golden request/response from the manifest that the new version pins (by VersionId and sha256),
invokes that version directly with the request as an API Gateway HTTP API event, compares the answer
within the manifest's ``atol``, checks the model's metadata route (``GET /v2/models/{name}``, answered by
the FastAPI app rather than the direct inference path) against the manifest, and reports Succeeded or
Failed. Anything that goes wrong on the way (an unreadable manifest, a function error, a timeout) is a
Failed: a deployment is never left waiting.

A version without a model (``MODEL_URI`` empty: a deploy before the first model is published) must
answer health as such: live, and not ready with a 4xx, never a 5xx.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import boto3
from botocore.config import Config
from onnx_lambda_helpers.apigw_event import http_event, machine_claims
from onnx_lambda_helpers.emf import log
from onnx_lambda_helpers.golden import embeddings_mismatches, infer_mismatches, metadata_mismatches
from onnx_lambda_helpers.model_ref import load_manifest, parse_model_uri

SUCCEEDED = "Succeeded"
FAILED = "Failed"


@dataclass(frozen=True, slots=True)
class HookSettings:
    """From the hook's environment, which the template fills from the same parameters as the function's."""

    target_version_arn: str
    model_uri: str
    manifest_version_id: str
    manifest_sha256: str
    issuer: str
    client_id: str
    scopes: tuple[str, ...]

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> HookSettings:
        return cls(
            target_version_arn=environ["TARGET_FUNCTION_VERSION"],
            model_uri=environ["MODEL_URI"],
            manifest_version_id=environ["MANIFEST_VERSION_ID"],
            manifest_sha256=environ["MANIFEST_SHA256"],
            issuer=environ["JWT_ISSUER"],
            client_id=environ["JWT_CLIENT_ID"],
            scopes=tuple(s.strip() for s in environ["ROUTE_SCOPES"].split(",") if s.strip()),
        )


#: Standard retries ride out a throttled call; the read timeout covers a cold start with a model fetch.
_CONFIG = Config(retries={"mode": "standard"}, read_timeout=120)


@cache
def _s3() -> Any:
    return boto3.client("s3", config=_CONFIG)


@cache
def _lambda() -> Any:
    return boto3.client("lambda", config=_CONFIG)


@cache
def _codedeploy() -> Any:
    return boto3.client("codedeploy", config=_CONFIG)


def handler(event: Mapping[str, Any], context: object) -> dict[str, Any]:
    deployment_id = event["DeploymentId"]
    hook_execution_id = event["LifecycleEventHookExecutionId"]
    try:
        problems = check_new_version(HookSettings.from_environment(os.environ), _s3(), _lambda())
    except Exception as exc:  # every failure must reach CodeDeploy as Failed
        problems = [f"the check could not run: {type(exc).__name__}: {exc}"]
    status = SUCCEEDED if not problems else FAILED
    log("INFO" if status == SUCCEEDED else "ERROR", "pre-traffic check", status=status, problems=problems,
        deployment_id=deployment_id)  # fmt: skip
    _codedeploy().put_lifecycle_event_hook_execution_status(
        deploymentId=deployment_id, lifecycleEventHookExecutionId=hook_execution_id, status=status
    )
    return {"status": status, "problems": problems}


def check_new_version(settings: HookSettings, s3: Any, lambda_client: Any) -> list[str]:
    """Replay the manifest's golden requests against the new version; return what went wrong."""
    if not settings.model_uri:
        return check_version_without_model(_invoker(lambda_client, settings.target_version_arn))
    manifest = load_manifest(
        s3, parse_model_uri(settings.model_uri, settings.manifest_version_id, settings.manifest_sha256)
    )
    golden = manifest["golden"]
    atol = float(golden.get("atol", 1e-4))
    name = str(manifest["name"])
    claims = machine_claims(issuer=settings.issuer, client_id=settings.client_id, scopes=settings.scopes)
    invoke = _invoker(lambda_client, settings.target_version_arn)

    problems = []
    infer = http_event(
        method="POST",
        path=f"/v2/models/{name}/infer",
        route_key="POST /v2/models/{model_name}/infer",
        path_parameters={"model_name": name},
        body=golden["infer_request"],
        claims=claims,
        scopes=settings.scopes,
    )
    status, answer = invoke(infer)
    if status != 200:
        problems.append(f"POST /v2/models/{name}/infer answered {status}: {answer!r:.300}")
    else:
        problems.extend(infer_mismatches(golden["infer_response"], answer, atol))
    if golden.get("embeddings_request") and golden.get("embeddings_response"):
        embeddings = http_event(
            method="POST",
            path="/v1/embeddings",
            route_key="POST /v1/embeddings",
            body=golden["embeddings_request"],
            claims=claims,
            scopes=settings.scopes,
        )
        status, answer = invoke(embeddings)
        if status != 200:
            problems.append(f"POST /v1/embeddings answered {status}: {answer!r:.300}")
        else:
            problems.extend(embeddings_mismatches(golden["embeddings_response"], answer, atol))
    metadata = http_event(
        method="GET",
        path=f"/v2/models/{name}",
        route_key="GET /v2/models/{model_name}",
        path_parameters={"model_name": name},
        body=None,
        claims=claims,
        scopes=settings.scopes,
    )
    status, answer = invoke(metadata)
    if status != 200 or not isinstance(answer, dict):
        problems.append(f"GET /v2/models/{name} answered {status}: {answer!r:.300}")
    else:
        problems.extend(metadata_mismatches(manifest, answer))
    return problems


def check_version_without_model(invoke: Callable[[dict[str, Any]], tuple[int, Any]]) -> list[str]:
    """Live, and honestly not ready: 4xx (the Open Inference Protocol's "false"), never a 5xx."""
    problems = []
    for route, expected in (("/v2/health/live", range(200, 201)), ("/v2/health/ready", range(400, 500))):
        status, answer = invoke(
            http_event(method="GET", path=route, route_key=f"GET {route}", body=None, claims=None, scopes=())
        )
        if status not in expected:
            problems.append(f"GET {route} answered {status} without a model: {answer!r:.300}")
    return problems


def _invoker(lambda_client: Any, function: str) -> Callable[[dict[str, Any]], tuple[int, Any]]:
    def invoke(event: dict[str, Any]) -> tuple[int, Any]:
        response = lambda_client.invoke(
            FunctionName=function, InvocationType="RequestResponse", Payload=json.dumps(event).encode()
        )
        payload = json.loads(response["Payload"].read() or b"null")
        if response.get("FunctionError"):
            return 0, {"function_error": response["FunctionError"], "payload": payload}
        if not isinstance(payload, dict) or "statusCode" not in payload:
            return 0, {"unexpected_payload": payload}
        body = payload.get("body") or ""
        if payload.get("isBase64Encoded"):
            body = base64.b64decode(body).decode("utf-8", errors="replace")
        try:
            return int(payload["statusCode"]), json.loads(body) if body else None
        except json.JSONDecodeError:
            return int(payload["statusCode"]), body

    return invoke
