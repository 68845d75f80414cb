"""The local stand-in for AWS that the cold-start and HTTP paths need: moto's S3 + Cognito on loopback.

The same code as ``onnx-lambda serve``: :func:`~onnx_lambda.local_cloud.bootstrap` creates the bucket,
pool and clients, :func:`~onnx_lambda.publish.publish` uploads the models, and the dev user signs in
for a real RS256 access token.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from onnx_lambda.local_cloud import LocalStack, bootstrap, free_port, start_moto
from onnx_lambda.publish import PublishedModel, publish

LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}  # nosec B105  # moto's stand-in credentials, not secrets


@dataclass(frozen=True, slots=True)
class BenchStack:
    stack: LocalStack
    models: dict[str, PublishedModel]
    token: str

    def aws_environment(self) -> dict[str, str]:
        """What a process needs to reach the local S3 (moto accepts any credentials)."""
        return {
            **LOCAL_CREDENTIALS,
            "AWS_DEFAULT_REGION": self.stack.region,
            "AWS_REGION": self.stack.region,
            "ONNX_LAMBDA_S3_ENDPOINT_URL": self.stack.endpoint_url,
        }

    def jwt_environment(self) -> dict[str, str]:
        """The local server's auth settings: verify tokens against the local pool's JWKS."""
        return {
            "ONNX_LAMBDA_AUTH_MODE": "jwt",
            "ONNX_LAMBDA_JWT_ISSUER": self.stack.issuer,
            "ONNX_LAMBDA_JWT_JWKS_URL": self.stack.jwks_url,
            "ONNX_LAMBDA_JWT_AUDIENCE": f"{self.stack.user_client_id},{self.stack.m2m_client_id}",
        }


@contextmanager
def local_stack(models_dir: Path, names: tuple[str, ...]) -> Iterator[BenchStack]:
    """Start moto, create the stack, publish ``names`` and sign in; stop moto on exit."""
    import boto3

    from onnx_lambda.tokens import dev_user_token

    for key, value in LOCAL_CREDENTIALS.items():
        os.environ.setdefault(key, value)
    with tempfile.TemporaryDirectory(prefix="onnx-lambda-bench-") as scratch, start_moto(port=free_port()) as moto:
        stack = bootstrap(moto.endpoint_url, state_path=Path(scratch) / "local-stack.json", reuse=False)
        s3 = boto3.client(
            "s3",
            endpoint_url=stack.endpoint_url,
            region_name=stack.region,
            aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )
        published = {name: publish(models_dir / name, stack.bucket, s3) for name in names}
        token = dev_user_token(stack, use_cache=False)
        yield BenchStack(stack=stack, models=published, token=token)
