"""``sam build``, ``sam local invoke`` and ``sam local start-api`` against the local cloud, offline.

SAM CLI runs the image that ``sam build`` made, as Lambda would. Three things make that work here:

* the base images come from :mod:`~onnx_lambda_tools.local.containers` (nothing can be pulled), and the
  zip functions build in the SAM build stand-in (``--use-container --build-image``);
* SAM passes an ``--env-vars`` variable only when the template declares it, so the template declares the
  local-only ones (the S3 endpoint, the JWT settings) with empty values, which the service reads as unset;
* the function's container joins the network where moto runs (``--docker-network``).

SAM's local API skips JWT authorizers (aws-sam-cli #5131), so under ``start-api`` the function gets no
claims. Rather than serve protected routes unauthenticated, ``api`` sets ``ONNX_LAMBDA_AUTH_MODE=jwt``:
the function verifies the bearer token itself, with the authorizer's rules, against the local Cognito's
keys. The template writes ``apigateway`` as a literal, so a deployed stack can't switch this on
(tests/infra proves it); ``make serve-lambda`` is the path that enforces the authorizer in front of the
function as API Gateway does.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import boto3

from onnx_lambda_tools.local.cloud import LOCAL_CREDENTIALS_ENVIRONMENT, LocalStack, bootstrap
from onnx_lambda_tools.local.cloudformation import load_template
from onnx_lambda_tools.local.containers import (
    DEFAULT_MOTO_HOST_PORT,
    NETWORK,
    ROOT,
    LocalCloudEndpoints,
    build_image,
    build_standins,
    ensure_docker,
    ensure_moto_container,
    host_architecture,
    json_env_file,
    sam_executable,
)
from onnx_lambda_tools.publish import PublishedModel, models_variable, publish

FUNCTION: Final = "InferenceFunction"
#: What ``make model`` builds; every committed event names one of these.
MODELS: Final = ("all-minilm-l6-v2", "breast-cancer-classifier")
WORK_DIR: Final = ROOT / "build" / "sam-local"
REGION: Final = "us-east-1"


def sam_environment() -> dict[str, str]:
    """SAM CLI's own process: no telemetry, the legacy builder, and moto's stand-in credentials."""
    return {
        **os.environ,
        "SAM_CLI_TELEMETRY": "0",
        "DOCKER_BUILDKIT": "0",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        **LOCAL_CREDENTIALS_ENVIRONMENT,
    }


def sam_build_image(architecture: str) -> str:
    return f"onnx-lambda-standin/sam-build-python:3.13-{architecture}"


def sam_build() -> None:
    """``sam build`` of the whole template: the image with Docker, the zip functions in the build stand-in."""
    ensure_docker()
    architecture = host_architecture()
    build_standins(architecture)
    command = [
        sam_executable(),
        "build",
        "--use-container",
        "--build-image",
        sam_build_image(architecture),
        "--skip-pull-image",
    ]
    subprocess.run(command, check=True, cwd=ROOT, env=sam_environment())  # noqa: S603 - fixed argv


def publish_models(endpoints: LocalCloudEndpoints, models_dir: Path) -> tuple[LocalStack, list[PublishedModel]]:
    """The local pool, clients and bucket on the containerised moto, with the built models published."""
    stack = bootstrap(endpoints.host_url, REGION, state_path=WORK_DIR / "local-stack.json")
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoints.host_url,
        region_name=REGION,
        aws_access_key_id=LOCAL_CREDENTIALS_ENVIRONMENT["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_CREDENTIALS_ENVIRONMENT["AWS_SECRET_ACCESS_KEY"],
    )
    return stack, [publish(models_dir / name, stack.bucket, s3) for name in MODELS]


def function_variables(
    stack: LocalStack, published: Sequence[PublishedModel], endpoints: LocalCloudEndpoints, *, verify_tokens: bool
) -> dict[str, str]:
    """The variables ``sam local`` overrides, each declared by the template."""
    variables = {
        "ONNX_LAMBDA_MODELS": models_variable(model.source() for model in published),
        "ONNX_LAMBDA_S3_ENDPOINT_URL": endpoints.network_url,
    }
    if verify_tokens:
        variables |= {
            "ONNX_LAMBDA_AUTH_MODE": "jwt",
            "ONNX_LAMBDA_JWT_ISSUER": stack.issuer,
            "ONNX_LAMBDA_JWT_JWKS_URL": endpoints.for_network(stack.jwks_url),
            "ONNX_LAMBDA_JWT_AUDIENCE": f"{stack.user_client_id},{stack.m2m_client_id}",
        }
    return variables


def prepare(models_dir: Path, moto_port: int, *, verify_tokens: bool) -> tuple[LocalStack, Path]:
    """moto running, the models published, and the ``--env-vars`` file written; returns the stack and file."""
    endpoints = ensure_moto_container(moto_port)
    stack, published = publish_models(endpoints, models_dir)
    name = "env-api.json" if verify_tokens else "env-invoke.json"
    variables = function_variables(stack, published, endpoints, verify_tokens=verify_tokens)
    return stack, json_env_file(WORK_DIR / name, FUNCTION, variables)


def template_memory_size(template: Path = ROOT / "template.yaml") -> int:
    """The function's MemorySize as a deploy gets it by default: the template's parameter default."""
    return int(load_template(template)["Parameters"]["MemorySize"]["Default"])


def built_template() -> Path:
    template = ROOT / ".aws-sam" / "build" / "template.yaml"
    if not template.is_file():
        raise SystemExit("no .aws-sam/build/template.yaml: run `make sam-build` first")
    return template


def invoke_command(event: Path, env_file: Path) -> list[str]:
    return [
        sam_executable(),
        "local",
        "invoke",
        FUNCTION,
        "--event",
        str(event),
        "--env-vars",
        str(env_file),
        "--docker-network",
        NETWORK,
        "--skip-pull-image",
    ]


def api_command(env_file: Path, host: str, port: int) -> list[str]:
    return [
        sam_executable(),
        "local",
        "start-api",
        "--host",
        host,
        "--port",
        str(port),
        "--env-vars",
        str(env_file),
        "--docker-network",
        NETWORK,
        "--skip-pull-image",
        "--warm-containers",
        "LAZY",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sam_local", description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models")
    parser.add_argument("--moto-port", type=int, default=DEFAULT_MOTO_HOST_PORT)
    commands = parser.add_subparsers(dest="command", required=True)
    image = commands.add_parser("image", help="docker build of the function's image on the stand-in base")
    image.add_argument("--arch", choices=["x86_64", "arm64"], default=host_architecture())
    commands.add_parser("build", help="sam build of the whole template")
    invoke = commands.add_parser("invoke", help="sam local invoke of the inference function on an event file")
    invoke.add_argument("event", type=Path)
    api = commands.add_parser("api", help="sam local start-api, the function verifying tokens itself")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=3000)
    args = parser.parse_args(argv)

    if args.command == "image":
        print(build_image(args.arch))
        return 0
    if args.command == "build":
        sam_build()
        return 0
    built_template()
    if args.command == "invoke":
        _, env_file = prepare(args.models_dir, args.moto_port, verify_tokens=False)
        # SAM writes the function's logs to stderr and its response, as the last line, to stdout.
        return subprocess.run(invoke_command(args.event, env_file), cwd=ROOT, env=sam_environment()).returncode  # noqa: S603
    stack, env_file = prepare(args.models_dir, args.moto_port, verify_tokens=True)
    print(
        f"sam local start-api on http://{args.host}:{args.port}; tokens from the local Cognito at "
        f"{stack.endpoint_url} (user {stack.username!r}; see `onnx-lambda token --help`)",
        file=sys.stderr,
    )
    return subprocess.run(api_command(env_file, args.host, args.port), cwd=ROOT, env=sam_environment()).returncode  # noqa: S603


if __name__ == "__main__":
    raise SystemExit(main())
