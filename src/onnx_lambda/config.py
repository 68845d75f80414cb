"""Typed settings, read once from the environment and validated at start-up.

Every knob of the service is here, so that a misconfigured deployment fails at init with a
message that names the variable, never on the first request.

The variables are read by :func:`environment_values`, a few lines over ``os.environ``, rather than by
pydantic-settings: its import cost 0.1 s of every cold start (asyncio and its sources' machinery).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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
    #: The S3 VersionId of the manifest's optimized model (model.optimized.onnx): with it the store fetches
    #: that file instead of model.onnx, when this onnxruntime wrote it. Unset: always model.onnx.
    optimized_version_id: str | None = None

    @field_validator("uri")
    @classmethod
    def _known_scheme(cls, uri: str) -> str:
        if not uri.startswith(("s3://", "file://")):
            raise ValueError(f"model uri must start with s3:// or file://, got {uri!r}")
        return uri

    @field_validator(
        "sha256",
        "manifest_version_id",
        "manifest_sha256",
        "tokenizer_version_id",
        "optimized_version_id",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # The template fills every pin from a parameter; a model without a tokenizer (or an optimized model)
        # leaves its pin empty.
        return None if value == "" else value


AuthMode = Literal["apigateway", "jwt"]


#: Each setting is the variable ``ONNX_LAMBDA_<FIELD NAME>`` (matched in any case).
ENV_PREFIX = "ONNX_LAMBDA_"
#: Settings whose variable holds JSON. The lists of names also take ``a,b`` (CloudFormation's
#: CommaDelimitedList); every other variable is text that pydantic converts (numbers, paths, literals).
JSON_FIELDS = frozenset({"models"})
COMMA_LIST_FIELDS = frozenset({"jwt_audience", "jwt_scopes"})


def environment_values(environ: Mapping[str, str] | None = None) -> dict[str, object]:
    """The settings that ``ONNX_LAMBDA_*`` variables give, JSON decoded where the setting holds JSON.

    Variables that name no setting are ignored (the developer tools read a few of their own).
    """
    prefix = ENV_PREFIX.lower()
    values: dict[str, object] = {}
    for name, text in (os.environ if environ is None else environ).items():
        field = name.lower()
        if not field.startswith(prefix) or (field := field[len(prefix) :]) not in Settings.model_fields:
            continue
        if field in JSON_FIELDS:
            try:
                values[field] = json.loads(text)
            except ValueError as error:
                raise ValueError(f"{name} is not valid JSON: {error}") from None
        else:
            values[field] = text
    return values


class Settings(BaseModel):
    """Service configuration: ``ONNX_LAMBDA_*`` variables, under any values passed explicitly."""

    model_config = ConfigDict(extra="ignore", frozen=True)

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
    #: 0 = chosen from the CPU this function may use (:func:`plan_threads`).
    intra_op_threads: int = Field(default=0, ge=0)
    #: Unset = chosen with the threads (:func:`plan_threads`).
    intra_op_spinning: bool | None = None
    graph_optimization: Literal["disable", "basic", "extended", "all"] = "all"

    # --- auth -----------------------------------------------------------------------------
    #: ``apigateway``: trust the claims API Gateway's JWT authorizer verified (Lambda).
    #: ``jwt``: verify the bearer token here, with the same rules (local server).
    auth_mode: AuthMode = "apigateway"
    jwt_issuer: str | None = None
    #: Defaults to ``{issuer}/.well-known/jwks.json``; separate because moto serves keys elsewhere.
    jwt_jwks_url: str | None = None
    #: App client ids accepted as ``aud`` (ID tokens) or ``client_id`` (access tokens).
    jwt_audience: list[str] = Field(default_factory=list)
    #: A token needs at least one of these to call a protected route.
    jwt_scopes: list[str] = Field(default_factory=lambda: ["inference/invoke", "aws.cognito.signin.user.admin"])
    jwt_leeway_seconds: int = Field(default=30, ge=0, le=300)

    @model_validator(mode="before")
    @classmethod
    def _environment_under_given_values(cls, values: object) -> object:
        # As pydantic-settings did: a value passed explicitly wins over its variable.
        return {**environment_values(), **values} if isinstance(values, dict) else values

    @field_validator("s3_endpoint_url", "jwt_issuer", "jwt_jwks_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # The template declares the local-only variables with empty values (SAM's local commands pass a
        # variable only when the template declares it), so empty means "not set".
        return None if value == "" else value

    @field_validator(*COMMA_LIST_FIELDS, mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        # CloudFormation passes CommaDelimitedList parameters as "a,b"; accept that as well as JSON.
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)  # a JSONDecodeError is a ValueError: pydantic reports it
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @property
    def jwks_url(self) -> str | None:
        if self.jwt_jwks_url:
            return self.jwt_jwks_url
        return f"{self.jwt_issuer.rstrip('/')}/.well-known/jwks.json" if self.jwt_issuer else None

    @property
    def threads(self) -> ThreadPlan:
        """onnxruntime's intra-op threads and spinning: the measured rule, unless set explicitly."""
        plan = plan_threads(cpu_budget(), available_cpus(), threads=self.intra_op_threads or None)
        if self.intra_op_spinning is not None:
            plan = ThreadPlan(plan.threads, self.intra_op_spinning)
        return plan


@dataclass(frozen=True, slots=True)
class ThreadPlan:
    threads: int
    #: Whether idle pool threads spin instead of sleeping: faster when each has a CPU to itself, a waste of
    #: the CPU quota when not.
    spinning: bool


def plan_threads(budget: float, cores: int, threads: int | None = None) -> ThreadPlan:
    """The session options that measured fastest for a CPU budget (docs/performance.md, "Session options").

    ``budget`` is the CPU time this process may use per second of wall clock (Lambda: MemorySize/1769);
    ``cores`` is how many CPUs it may run on (Lambda shows two up to about 3 GB). ``threads`` fixes the
    thread count, leaving the rule only spinning to decide.
    """
    if threads is None:
        threads = max(1, min(cores, round(budget)))
    # Below one CPU a spinning pool spends the quota waiting, and the throttled requests wait ~100 ms.
    return ThreadPlan(threads, spinning=budget >= 1.0)


def cpu_budget(cgroup_root: Path = Path("/sys/fs/cgroup")) -> float:
    """CPUs' worth of time this process may use: the cgroup's CPU quota, else Lambda's share, else its CPUs.

    Lambda gives a function MemorySize/1769 vCPU; inside its microVM that share may not show as a cgroup
    quota, so the memory size stands in for it. A container under ``docker run --cpus`` (or any CFS quota)
    shows its quota in ``cpu.max`` (cgroup v2) or ``cpu.cfs_quota_us`` (v1).
    """
    quota = _cgroup_cpu_quota(cgroup_root)
    memory_mb = lambda_memory_mb()
    if quota is None and memory_mb is not None:
        quota = memory_mb / LAMBDA_MB_PER_VCPU
    cpus = float(available_cpus())
    return cpus if quota is None else min(quota, cpus)


def lambda_memory_mb() -> int | None:
    """The function's MemorySize as Lambda sets it (``AWS_LAMBDA_FUNCTION_MEMORY_SIZE``), or None outside Lambda."""
    memory_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "")
    if memory_mb.isascii() and memory_mb.isdigit() and 0 < len(memory_mb) < 7:
        return int(memory_mb)
    return None


#: Lambda's CPU share: one vCPU at 1,769 MB of memory.
LAMBDA_MB_PER_VCPU = 1769


def _cgroup_cpu_quota(root: Path) -> float | None:
    try:
        if (root / "cpu.max").exists():
            quota, period = (root / "cpu.max").read_text().split()
            return None if quota == "max" else int(quota) / int(period)
        if (root / "cpu" / "cpu.cfs_quota_us").exists():
            quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
            period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
            return None if quota_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None
    return None


def available_cpus() -> int:
    """CPUs this process may run on (cgroup/affinity aware), which is what Lambda's memory size buys."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()  # type: ignore[call-arg]  # fields come from the environment
