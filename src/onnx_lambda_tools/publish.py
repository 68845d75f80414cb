"""Publish a model directory to S3 under an immutable, content-addressed prefix.

The same code publishes to the local S3 for ``make serve`` and to the real bucket before ``sam deploy``,
so the service always loads a model the way Lambda does: ``s3://`` with a pinned VersionId and sha256.
"""

from __future__ import annotations

import argparse
import json
import shlex
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onnx_lambda.config import ModelSource
from onnx_lambda.manifest import MANIFEST_FILE, MODEL_FILE, TOKENIZER_FILE, Manifest, sha256_hex, verify_model_dir

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_CONTENT_TYPES = {MODEL_FILE: "application/octet-stream", MANIFEST_FILE: "application/json"}


@dataclass(frozen=True, slots=True)
class PublishedModel:
    """Where a model's files landed, and the pins a deployment needs to read exactly those."""

    name: str
    version: str
    bucket: str
    key: str
    version_id: str
    #: model.onnx's sha256, as its manifest lists it.
    sha256: str
    manifest_version_id: str
    manifest_sha256: str
    #: Empty for a model without a tokenizer.
    tokenizer_version_id: str
    #: The optimized model.onnx's (model.optimized.onnx); empty for a model whose manifest lists none.
    optimized_version_id: str = ""

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}?versionId={self.version_id}"

    def source(self) -> ModelSource:
        """The service's configuration for this model: every file pinned."""
        return ModelSource(
            uri=self.uri,
            manifest_version_id=self.manifest_version_id,
            manifest_sha256=self.manifest_sha256,
            tokenizer_version_id=self.tokenizer_version_id or None,
            optimized_version_id=self.optimized_version_id or None,
        )

    def parameters(self) -> dict[str, str]:
        """The template's model parameters."""
        return {
            "ModelKey": self.key,
            "ModelVersionId": self.version_id,
            "ManifestVersionId": self.manifest_version_id,
            "ManifestSha256": self.manifest_sha256,
            "TokenizerVersionId": self.tokenizer_version_id,
            "OptimizedModelVersionId": self.optimized_version_id,
        }

    def parameter_overrides(self) -> str:
        """What ``sam deploy --parameter-overrides`` takes to pin this model, quoted for a shell.

        An empty value is passed as ``Name=""``, SAM's empty string: left out, sam deploy would keep the
        stack's previous value.
        """
        return " ".join(
            shlex.quote(f"{name}={value}" if value else f'{name}=""') for name, value in self.parameters().items()
        )


def models_variable(sources: Iterable[ModelSource]) -> str:
    """``ONNX_LAMBDA_MODELS`` for these sources, as the template writes it for a deployed function."""
    return json.dumps([source.model_dump(exclude_none=True) for source in sources])


def model_prefix(model_dir: Path, manifest: Manifest, root: str = "models") -> str:
    # The manifest's hash covers every file's sha256, so the prefix is immutable: a new model, tokenizer or
    # golden never overwrites the files an older Lambda version reads. The service checks this digest
    # against the manifest sha256 it is pinned to.
    digest = sha256_hex((model_dir / MANIFEST_FILE).read_bytes())
    return f"{root.strip('/')}/{manifest.name}/{manifest.version}-{digest[:16]}"


def publish(model_dir: Path, bucket: str, s3: S3Client, root: str = "models") -> PublishedModel:
    """Upload every file the manifest lists (the model, its optimized copy, the tokenizer) and the manifest;
    refuse a directory whose files disagree with its manifest."""
    manifest = verify_model_dir(model_dir)
    prefix = model_prefix(model_dir, manifest, root)
    manifest_sha256 = sha256_hex((model_dir / MANIFEST_FILE).read_bytes())
    hashes = {**{name: entry.sha256 for name, entry in manifest.files.items()}, MANIFEST_FILE: manifest_sha256}
    # The model goes last, so the files it is verified against are in place before it can be pinned.
    names = sorted(manifest.files, key=lambda name: name == MODEL_FILE)
    version_ids: dict[str, str] = {}
    for name in [*names, MANIFEST_FILE]:
        key = f"{prefix}/{name}"
        existing = _existing_version(s3, bucket, key, hashes[name])
        if existing is not None:
            version_ids[name] = existing
            continue
        response = s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=(model_dir / name).read_bytes(),
            ContentType=_CONTENT_TYPES.get(name, "application/json"),
            Metadata={"sha256": hashes[name]},
        )
        version_ids[name] = response.get("VersionId") or ""
    if any(not version_id or version_id == "null" for version_id in version_ids.values()):
        raise ValueError(f"bucket {bucket!r} is not versioned: a model can't be pinned without a VersionId")
    tokenizer = manifest.tokenizer.file if manifest.tokenizer is not None else TOKENIZER_FILE
    return PublishedModel(
        name=manifest.name,
        version=manifest.version,
        bucket=bucket,
        key=f"{prefix}/{MODEL_FILE}",
        version_id=version_ids[MODEL_FILE],
        sha256=manifest.model_sha256,
        manifest_version_id=version_ids[MANIFEST_FILE],
        manifest_sha256=manifest_sha256,
        tokenizer_version_id=version_ids.get(tokenizer, ""),
        optimized_version_id=version_ids[manifest.optimized.file] if manifest.optimized is not None else "",
    )


def _existing_version(s3: S3Client, bucket: str, key: str, sha256: str) -> str | None:
    """Re-publishing the same bytes keeps the same VersionId, so deploy parameters stay stable."""
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except s3.exceptions.ClientError:
        return None
    if head.get("Metadata", {}).get("sha256") == sha256:
        return head.get("VersionId")
    return None


def stack_output(stack_name: str, output_key: str, region: str | None) -> str:
    import boto3

    stacks = boto3.client("cloudformation", region_name=region).describe_stacks(StackName=stack_name)["Stacks"]
    for output in stacks[0].get("Outputs", []):
        if output.get("OutputKey") == output_key:
            return str(output["OutputValue"])
    raise SystemExit(f"stack {stack_name!r} has no output {output_key!r}")


@dataclass(frozen=True, slots=True)
class DeployTarget:
    """A samconfig.toml environment: what ``sam deploy --config-env`` deploys to."""

    config_env: str
    stack_name: str
    region: str | None


def deploy_targets(config_file: Path) -> list[DeployTarget]:
    """Every environment of a samconfig.toml with a stack name (none if there is no such file)."""
    if not config_file.is_file():
        return []
    config: dict[str, Any] = tomllib.loads(config_file.read_text())
    targets = []
    for env, commands in config.items():
        if not isinstance(commands, dict):
            continue
        settings = {
            **commands.get("global", {}).get("parameters", {}),
            **commands.get("deploy", {}).get("parameters", {}),
        }
        if settings.get("stack_name"):
            targets.append(DeployTarget(env, str(settings["stack_name"]), settings.get("region")))
    return targets


def deploy_command(overrides: str, config_env: str | None) -> str:
    """The ``sam deploy`` line that rolls the model out, or, without an environment, what to pass it."""
    if config_env is None:
        return f"parameter overrides for `sam deploy --config-env <environment> --parameter-overrides`: {overrides}"
    return f"sam deploy --config-env {shlex.quote(config_env)} --parameter-overrides {overrides}"


def add_publish_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", type=Path, help="a directory with model.onnx, manifest.json (and tokenizer.json)")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--bucket", help="the model bucket")
    target.add_argument("--stack-name", help="read the bucket from this stack's ModelBucketName output")
    target.add_argument(
        "--config-env",
        help="the samconfig.toml environment (as for `sam deploy --config-env`): its stack's bucket, in its region",
    )
    parser.add_argument("--config-file", type=Path, default=Path("samconfig.toml"), help="default: samconfig.toml")
    parser.add_argument("--region", help="AWS region (default: the environment's, else your AWS configuration)")
    parser.add_argument("--prefix", default="models", help="key prefix in the bucket (default: models)")
    parser.add_argument("--endpoint-url", help="an S3-compatible endpoint, e.g. the local stack's")
    parser.add_argument("--write-overrides", type=Path, help="also write the parameter overrides to this file")


def publish_command(args: argparse.Namespace) -> int:
    import boto3
    import botocore.exceptions

    targets = deploy_targets(args.config_file)
    region, stack_name, config_env = args.region, args.stack_name, args.config_env
    if config_env is not None:
        found = [target for target in targets if target.config_env == config_env]
        if not found:
            print(f"{args.config_file} has no environment {config_env!r} with a stack_name")
            return 2
        stack_name, region = found[0].stack_name, region or found[0].region
    region = region or boto3.session.Session().region_name
    if stack_name is not None and config_env is None:
        # The environment that deploys this stack in this region, so the printed line runs as printed.
        matching = [t.config_env for t in targets if t.stack_name == stack_name and t.region in (region, None)]
        config_env = matching[0] if len(matching) == 1 else None
    try:
        bucket = args.bucket or stack_output(stack_name, "ModelBucketName", region)
        s3 = boto3.client("s3", region_name=region, endpoint_url=args.endpoint_url)
        published = publish(args.model_dir, bucket, s3, args.prefix)
    except (ValueError, FileNotFoundError) as exc:
        print(f"refusing to publish: {exc}")
        return 2
    except botocore.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("AccessDenied", "AccessDeniedException", "403"):
            raise
        print(f"could not publish: {exc}")
        print(
            "Only the stack's model publisher may write to the model bucket (its ModelPublisherPrincipalArn output),"
            " and it may read the stack's outputs. Run publish as it, e.g. with an AWS CLI profile that assumes it:"
            " AWS_PROFILE=onnx-lambda-<environment>-publisher onnx-lambda publish ..."
            " (docs/operations.md, '6. Who may change the models')."
        )
        return 2
    overrides = published.parameter_overrides()
    print(f"published {published.name} {published.version} to {published.uri}")
    print(deploy_command(overrides, config_env))
    if args.write_overrides:
        args.write_overrides.parent.mkdir(parents=True, exist_ok=True)
        args.write_overrides.write_text(overrides + "\n")
    return 0
