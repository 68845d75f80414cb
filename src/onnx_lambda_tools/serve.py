"""``onnx-lambda serve``: the whole service on a laptop, no AWS account and no Docker.

:func:`local_deployment` starts moto's server on loopback (S3 + Cognito), creates the pool, clients and
a dev user, and publishes the models with the same ``publish`` code that targets AWS; ``serve`` then
serves the app with uvicorn (or, with ``--lambda``, through the API Gateway + Lambda emulator), and the
benchmarks run against the same deployment. The service loads its models from ``s3://`` with a pinned
VersionId and sha256 and verifies real RS256 tokens against the pool's JWKS, exactly as it does behind
API Gateway.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from onnx_lambda_tools.invoke import DEFAULT_MODELS
from onnx_lambda_tools.local.cloud import LocalCloudError, free_port, port_is_free

if TYPE_CHECKING:
    from onnx_lambda.config import Settings
    from onnx_lambda_tools.local.cloud import LocalStack
    from onnx_lambda_tools.publish import PublishedModel

#: moto accepts any credentials; these keep boto3 from looking for real ones.
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}  # nosec B105  # moto's stand-in credentials, not secrets


@dataclass(frozen=True, slots=True)
class LocalDeployment:
    """The local stack with the models published to its bucket: what ``sam deploy`` and ``publish`` make in AWS."""

    stack: LocalStack
    #: By model directory name, in the order asked for.
    models: dict[str, PublishedModel]

    def settings(self) -> Settings:
        """The service's settings: the models from the local S3, tokens verified against the local pool."""
        from onnx_lambda.config import Settings

        return Settings(
            models=[model.source() for model in self.models.values()],
            s3_endpoint_url=self.stack.endpoint_url,
            auth_mode="jwt",
            jwt_issuer=self.stack.issuer,
            jwt_jwks_url=self.stack.jwks_url,
            jwt_audience=[self.stack.user_client_id, self.stack.m2m_client_id],
        )

    def aws_environment(self) -> dict[str, str]:
        """What another process needs to reach the local S3."""
        return {
            **LOCAL_CREDENTIALS,
            "AWS_DEFAULT_REGION": self.stack.region,
            "AWS_REGION": self.stack.region,
            "ONNX_LAMBDA_S3_ENDPOINT_URL": self.stack.endpoint_url,
        }

    def jwt_environment(self) -> dict[str, str]:
        """:meth:`settings`' auth as variables, for another process: verify tokens against the local pool."""
        return {
            "ONNX_LAMBDA_AUTH_MODE": "jwt",
            "ONNX_LAMBDA_JWT_ISSUER": self.stack.issuer,
            "ONNX_LAMBDA_JWT_JWKS_URL": self.stack.jwks_url,
            "ONNX_LAMBDA_JWT_AUDIENCE": f"{self.stack.user_client_id},{self.stack.m2m_client_id}",
        }


@contextmanager
def local_deployment(
    models_dir: Path, names: Sequence[str], *, port: int, state_path: Path
) -> Iterator[LocalDeployment]:
    """Start moto on loopback ``port``, create the stack (state in ``state_path``), publish ``names``; stop moto
    on exit. :class:`~onnx_lambda_tools.local.cloud.LocalCloudError` says why the stack can't start."""
    import boto3

    from onnx_lambda_tools.local.cloud import bootstrap, start_moto
    from onnx_lambda_tools.publish import publish

    for key, value in LOCAL_CREDENTIALS.items():
        os.environ.setdefault(key, value)
    with start_moto(port=port) as moto:
        stack = bootstrap(moto.endpoint_url, state_path=state_path, reuse=False)
        s3 = boto3.client(
            "s3",
            endpoint_url=stack.endpoint_url,
            region_name=stack.region,
            aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )
        yield LocalDeployment(stack, {name: publish(models_dir / name, stack.bucket, s3) for name in names})


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")), help="API port (default 8000)")
    parser.add_argument("--moto-port", type=int, default=None, help="local AWS port (default: API port + 1)")
    parser.add_argument("--models-dir", type=Path, default=Path("models"), help="built models (default: models)")
    parser.add_argument(
        "--model",
        action="append",
        dest="models",
        help=f"a model directory name to serve (default: {DEFAULT_MODELS})",
    )
    # API Gateway + Lambda emulation (docs/emulator.md).
    parser.add_argument(
        "--lambda",
        dest="use_lambda",
        action="store_true",
        help="serve through the API Gateway + Lambda emulator: template.yaml's routes and JWT authorizer in "
        "front of real Lambda runtimes (the Runtime Interface Emulator running the image's CMD)",
    )
    parser.add_argument("--template", type=Path, default=Path("template.yaml"), help="with --lambda: the SAM template")
    parser.add_argument(
        "--lambda-concurrency", type=int, default=4, help="with --lambda: most execution environments (default 4)"
    )
    parser.add_argument(
        "--lambda-idle-seconds",
        type=float,
        default=300.0,
        help="with --lambda: stop an execution environment idle this long (default 300)",
    )
    parser.add_argument(
        "--parameter-overrides",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="with --lambda: template parameters, as for `sam deploy` (e.g. ApiLatencyP99ThresholdMs=200)",
    )
    # The template's dashboard and alarms on the emulator's metrics (docs/emulator.md).
    parser.add_argument(
        "--monitoring-port",
        type=int,
        default=None,
        help="with --lambda: the dashboard, alarms and metrics on 127.0.0.1:<port> (default: API port + 2)",
    )
    parser.add_argument(
        "--monitoring-minute",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="with --lambda: how long a CloudWatch minute lasts; every period scales with it (default 60)",
    )
    parser.add_argument("--no-monitoring", action="store_true", help="with --lambda: no metrics, dashboard or alarms")


def serve_command(args: argparse.Namespace) -> int:
    from onnx_lambda_tools.local.cloud import default_state_path

    moto_port = args.moto_port or args.port + 1
    ports = [("API", args.port), ("local AWS", moto_port)]
    if args.use_lambda and not args.no_monitoring:
        ports.append(("monitoring", monitoring_port(args)))
    try:
        parameter_overrides(args.parameter_overrides)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not args.monitoring_minute > 0:
        print("error: --monitoring-minute must be more than 0 seconds", file=sys.stderr)
        return 2
    for name, port in ports:
        if not port_is_free(args.host, port):
            print(
                f"error: port {port} ({name}) on {args.host} is in use, probably by an earlier `make serve`.\n"
                f"  Stop it (`fuser -k {port}/tcp`) or choose another: PORT=8100 make serve",
                file=sys.stderr,
            )
            return 1
    names = tuple(args.models or DEFAULT_MODELS)
    for name in names:
        if not (args.models_dir / name / "manifest.json").is_file():
            print(f"error: {args.models_dir / name} has no manifest.json; run `make model`", file=sys.stderr)
            return 1

    # For this process only, so boto3 never looks for a real region (local_deployment sets the credentials).
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    state_path = default_state_path()  # where `onnx-lambda token` finds the stack
    try:
        with local_deployment(args.models_dir, names, port=moto_port, state_path=state_path) as deployment:
            _serve(args, deployment, state_path)
    except LocalCloudError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _serve(args: argparse.Namespace, deployment: LocalDeployment, state_path: Path) -> None:
    import uvicorn

    from onnx_lambda.app import create_app
    from onnx_lambda.registry import load_registry

    settings = deployment.settings()
    models = [model.name for model in deployment.models.values()]
    if args.use_lambda:
        from onnx_lambda_tools.local.emulator.serve import serve_lambda

        _print_next_steps(args.host, args.port, models, deployment.stack.username, state_path)
        serve_lambda(
            settings,
            host=args.host,
            port=args.port,
            template=args.template,
            max_concurrency=args.lambda_concurrency,
            idle_seconds=args.lambda_idle_seconds,
            log_dir=state_path.parent / "lambda-logs",
            parameters=parameter_overrides(args.parameter_overrides),
            monitoring_port=None if args.no_monitoring else monitoring_port(args),
            minute_seconds=args.monitoring_minute,
        )
        return
    registry = load_registry(settings)
    app = create_app(registry, settings)
    _print_next_steps(args.host, args.port, models, deployment.stack.username, state_path)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


def monitoring_port(args: argparse.Namespace) -> int:
    """``--monitoring-port``, else the API port + 2 (moto has + 1)."""
    return int(args.monitoring_port) if args.monitoring_port is not None else int(args.port) + 2


def parameter_overrides(pairs: Sequence[str]) -> dict[str, str]:
    """``KEY=VALUE`` words as template parameters."""
    overrides: dict[str, str] = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key:
            raise ValueError(f"--parameter-overrides takes KEY=VALUE words, got {pair!r}")
        overrides[key] = value
    return overrides


def _print_next_steps(host: str, port: int, models: list[str], username: str, state_path: Path) -> None:
    base = f"http://{host}:{port}"
    embedder = next((m for m in models if "minilm" in m), models[0])
    tabular = next((m for m in models if m != embedder), embedder)
    infer = (
        '{"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 30], "data": ['
        + ", ".join(["0.5"] * 30)
        + "]}]}"
    )
    print(
        f"""
onnx-lambda is serving {", ".join(models)} on {base}
auth is on: dev user {username!r}, password in {state_path}

  TOKEN=$(.venv/bin/onnx-lambda token)
  curl -s {base}/v1/embeddings -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \\
       -d '{{"model": "{embedder}", "input": "Serverless inference on Lambda"}}'; echo
  curl -s {base}/v2/models/{tabular}/infer -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \\
       -d '{infer}'; echo

OpenAPI: {base}/docs   Metadata: curl -s {base}/v2/models/{embedder} -H "Authorization: Bearer $TOKEN"
Ctrl-C stops everything.
""",
        flush=True,
    )


class ServeError(RuntimeError):
    """The background stack exited or never became ready; the message points at its log."""


@contextmanager
def background_serve(
    env: Mapping[str, str], log: IO[bytes], *flags: str, ready_timeout: float = 180.0, port: int | None = None
) -> Iterator[str]:
    """``onnx-lambda serve FLAGS`` on free ports (the API on ``port`` if given) in its own process group;
    yields the API URL once ready.

    The load tests, the soak, the integration tests and the demo all run the stack this way, and stop it
    as a terminal's Ctrl-C would.
    """
    port = port or free_port()
    command = [sys.executable, "-m", "onnx_lambda_tools.cli", "serve", *flags, "--port", str(port)]
    if "--lambda" in flags and "--monitoring-port" not in flags and "--no-monitoring" not in flags:
        command += ["--monitoring-port", str(free_port())]  # not API port + 2, which may be taken
    process = subprocess.Popen(  # noqa: S603 - our own CLI, fixed arguments
        [*command, "--moto-port", str(free_port())],
        env=dict(env),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if process.poll() is not None:
                raise ServeError(f"onnx-lambda serve exited with status {process.returncode}; see {log.name}")
            try:  # behind the emulator, the first request is the first environment's cold start
                with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=30) as response:  # noqa: S310  # nosec B310  # loopback http
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise ServeError(f"onnx-lambda serve was not ready after {ready_timeout:.0f} s; see {log.name}")
            time.sleep(0.2)
        yield url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
