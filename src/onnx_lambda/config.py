"""Typed settings, read once from the environment and validated at start-up.

Every knob of the service is here, so that a misconfigured deployment fails at init with a
message that names the variable, never on the first request.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

#: Lambda's synchronous invocation payload limit; API Gateway sends nothing larger.
LAMBDA_PAYLOAD_LIMIT = 6 * 1024 * 1024


class ModelSource(BaseModel):
    """One immutable model: where its files live and the pins they must match.

    ``uri`` is ``s3://bucket/key/model.onnx?versionId=...`` or ``file:///path/model.onnx``; the manifest.json
    and tokenizer.json are read from beside it. Trust starts at the manifest: pinned by VersionId and sha256,
    it lists the sha256 of every other file. On S3 every file is also pinned by its VersionId, so that a
    deployed version never reads a different object, even one with the same key.
    """

    model_config = ConfigDict(frozen=True)

    uri: str
    #: The model's sha256; optional, since the pinned manifest lists it (checked against it when given).
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    manifest_version_id: str | None = None
    manifest_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    #: Required on S3 when the manifest lists a tokenizer.
    tokenizer_version_id: str | None = None

    @field_validator("uri")
    @classmethod
    def _known_scheme(cls, uri: str) -> str:
        if not uri.startswith(("s3://", "file://")):
            raise ValueError(f"model uri must start with s3:// or file://, got {uri!r}")
        return uri

    @field_validator("sha256", "manifest_version_id", "manifest_sha256", "tokenizer_version_id", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # The template fills every pin from a parameter; a model without a tokenizer leaves its pin empty.
        return None if value == "" else value


AuthMode = Literal["apigateway", "jwt"]


class Settings(BaseSettings):
    """Service configuration. Variables carry the ``ONNX_LAMBDA_`` prefix."""

    model_config = SettingsConfigDict(env_prefix="ONNX_LAMBDA_", extra="ignore", frozen=True)

    #: JSON list of model sources, e.g. ``[{"uri": "s3://b/k?versionId=v", "sha256": "..."}]``. ``[]`` (the
    #: first deploy, before any model is published) starts a server that serves no model: live, not ready.
    models: list[ModelSource]

    # --- request limits -------------------------------------------------------------------
    max_body_bytes: int = Field(default=LAMBDA_PAYLOAD_LIMIT, gt=0, le=LAMBDA_PAYLOAD_LIMIT)
    max_batch_size: int = Field(default=64, gt=0)
    max_text_chars: int = Field(default=20_000, gt=0)

    # --- model store ----------------------------------------------------------------------
    cache_dir: Path = Path("/tmp/onnx-lambda-cache")  # noqa: S108  # nosec B108  # Lambda's only writable disk
    s3_endpoint_url: str | None = None
    s3_part_size: int = Field(default=8 * 1024 * 1024, ge=1024 * 1024)
    s3_max_concurrency: int = Field(default=8, gt=0)
    s3_max_attempts: int = Field(default=4, gt=0)
    s3_timeout_seconds: float = Field(default=3.0, gt=0)
    #: Upper bound on one model's fetch from S3 (every part and retry), so init fails clearly
    #: inside Lambda's 10 s init budget instead of being cut off by it.
    s3_deadline_seconds: float = Field(default=7.0, gt=0)

    # --- onnxruntime ----------------------------------------------------------------------
    #: 0 = the CPUs this process may use.
    intra_op_threads: int = Field(default=0, ge=0)
    graph_optimization: Literal["disable", "basic", "extended", "all"] = "all"

    # --- auth -----------------------------------------------------------------------------
    #: ``apigateway``: trust the claims API Gateway's JWT authorizer verified (Lambda).
    #: ``jwt``: verify the bearer token here, with the same rules (local server).
    auth_mode: AuthMode = "apigateway"
    jwt_issuer: str | None = None
    #: Defaults to ``{issuer}/.well-known/jwks.json``; separate because moto serves keys elsewhere.
    jwt_jwks_url: str | None = None
    #: App client ids accepted as ``aud`` (ID tokens) or ``client_id`` (access tokens).
    jwt_audience: Annotated[list[str], NoDecode] = Field(default_factory=list)
    #: A token needs at least one of these to call a protected route.
    jwt_scopes: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["inference/invoke", "aws.cognito.signin.user.admin"]
    )
    jwt_leeway_seconds: int = Field(default=30, ge=0, le=300)

    @field_validator("s3_endpoint_url", "jwt_issuer", "jwt_jwks_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # The template declares the local-only variables with empty values (SAM's local commands pass a
        # variable only when the template declares it), so empty means "not set".
        return None if value == "" else value

    @field_validator("jwt_audience", "jwt_scopes", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        # CloudFormation passes CommaDelimitedList parameters as "a,b"; accept that as well as JSON.
        if isinstance(value, str) and not value.lstrip().startswith("["):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @property
    def jwks_url(self) -> str | None:
        if self.jwt_jwks_url:
            return self.jwt_jwks_url
        return f"{self.jwt_issuer.rstrip('/')}/.well-known/jwks.json" if self.jwt_issuer else None

    @property
    def threads(self) -> int:
        return self.intra_op_threads or available_cpus()


def available_cpus() -> int:
    """CPUs this process may run on (cgroup/affinity aware), which is what Lambda's memory size buys."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()  # type: ignore[call-arg]  # fields come from the environment
