"""The API's request and response bodies, for OpenAPI.

The routes parse bodies with orjson straight into numpy and answer with orjson; these models describe
the same wire format for the OpenAPI document (and so for clients and schemathesis), and validate the
small embeddings request.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from onnx_lambda.manifest import TensorSpec

JSON = "application/json"


class ErrorBody(BaseModel):
    error: str


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIErrorBody(BaseModel):
    """The error object OpenAI's clients parse: the ``/v1/`` routes answer with it."""

    error: OpenAIErrorDetail


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class ReadyResponse(BaseModel):
    name: str
    ready: bool


class RepositoryIndexRequest(BaseModel):
    """The model repository extension's index request: the body is optional, and so is ``ready``."""

    ready: bool | None = None


class RepositoryModel(BaseModel):
    """One entry of the model repository index, as Triton writes it."""

    name: str
    version: str
    state: Literal["READY"]


class InferTensor(BaseModel):
    name: str
    datatype: Literal[
        "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
        "FP16", "FP32", "FP64", "BYTES",
    ]  # fmt: skip
    shape: list[int]
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class RequestedOutput(BaseModel):
    name: str
    parameters: dict[str, Any] | None = None


class InferRequestBody(BaseModel):
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[InferTensor] = Field(min_length=1)
    outputs: list[RequestedOutput] | None = None


class InferResponseBody(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[InferTensor]


class EmbeddingsRequest(BaseModel):
    """OpenAI's embeddings request; ``dimensions`` and ``user`` are accepted and checked or ignored."""

    model: str = Field(min_length=1)
    input: str | list[str]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, gt=0)
    user: str | None = None


class EmbeddingItem(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingItem]
    model: str
    usage: Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in (
        (400, "Malformed request: the message names the field"),
        (401, "Missing or invalid bearer token"),
        (403, "The token carries none of the route's scopes"),
        (404, "Unknown model or version"),
        (413, "Body, batch or text over the limits"),
        (415, "Wrong content type"),
        (422, "Well-formed but invalid request"),
        (503, "Models not loaded"),
    )
}
#: The same statuses in OpenAI's error shape, for the ``/v1/`` routes.
OPENAI_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {**response, "model": OpenAIErrorBody} for status, response in ERROR_RESPONSES.items()
}
#: Models nested in request bodies: FastAPI puts only response models in components, so these go in by hand.
REQUEST_SCHEMAS: dict[str, Any] = {}


def tensor_metadata(specs: tuple[TensorSpec, ...]) -> list[dict[str, Any]]:
    return [{"name": s.name, "datatype": s.datatype, "shape": s.shape} for s in specs]


def request_body_schema(model: type[BaseModel], *, binary: bool = False, required: bool = True) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    REQUEST_SCHEMAS.update(schema.pop("$defs", {}))
    content: dict[str, Any] = {JSON: {"schema": schema}}
    if binary:
        content["application/octet-stream"] = {
            "schema": {"type": "string", "format": "binary"},
            "description": "Binary tensor data extension: JSON header of Inference-Header-Content-Length bytes, "
            "then the raw tensors",
        }
    return {"requestBody": {"required": required, "content": content}}
