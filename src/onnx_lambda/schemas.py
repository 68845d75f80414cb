"""The API's request and response bodies, for OpenAPI.

The routes parse bodies with orjson straight into numpy and answer with orjson; these models describe
the same wire format for the OpenAPI document (and so for clients and schemathesis), and validate the
small embeddings request.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, ValidatorFunctionWrapHandler, field_validator

from onnx_lambda.manifest import TensorSpec

JSON = "application/json"


class Schema(BaseModel):
    """A body model whose validator is built when first used, not when this module is imported.

    The Lambda handler imports this module at init for one model (:class:`EmbeddingsRequest`, used on a
    request); the others serve FastAPI's app, which the handler builds only for the routes it doesn't
    answer itself. Building all of them at import was most of this module's import time.
    """

    model_config = ConfigDict(defer_build=True)


class ErrorBody(Schema):
    error: str


class OpenAIErrorDetail(Schema):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIErrorBody(Schema):
    """The error object OpenAI's clients parse: the ``/v1/`` routes answer with it."""

    error: OpenAIErrorDetail


class TensorMetadata(Schema):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(Schema):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ServerMetadata(Schema):
    name: str
    version: str
    extensions: list[str]


class ReadyResponse(Schema):
    name: str
    ready: bool


class RepositoryIndexRequest(Schema):
    """The model repository extension's index request: the body is optional, and so is ``ready``."""

    ready: bool | None = None


class RepositoryModel(Schema):
    """One entry of the model repository index, as Triton writes it."""

    name: str
    version: str
    state: Literal["READY"]


class InferTensor(Schema):
    name: str
    datatype: Literal[
        "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
        "FP16", "FP32", "FP64", "BYTES",
    ]  # fmt: skip
    shape: list[int]
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class RequestedOutput(Schema):
    name: str
    parameters: dict[str, Any] | None = None


class InferRequestBody(Schema):
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[InferTensor] = Field(min_length=1)
    outputs: list[RequestedOutput] | None = None


class InferResponseBody(Schema):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[InferTensor]


#: OpenAI's limits on one embeddings request (the ``input`` documentation of the ``openai`` package): at most
#: 2048 inputs, and 300,000 tokens summed over them. Each input's own limit is the model's context length.
OPENAI_MAX_INPUTS = 2048
OPENAI_MAX_REQUEST_TOKENS = 300_000
#: A token id: JSON integers only (no ``true``, no ``1.0``), as OpenAI's API takes them.
TokenId = Annotated[int, Strict()]


class EmbeddingsRequest(Schema):
    """OpenAI's embeddings request.

    ``input`` is one text, a list of texts, one token-id array or a list of them (OpenAI's four forms).
    ``dimensions`` is checked against the model's manifest; ``user`` is accepted and ignored (never logged).
    """

    model: str = Field(min_length=1)
    input: str | list[str] | list[TokenId] | list[list[TokenId]] = Field(
        description="Text or this model's token ids, one input or a list of them. OpenAI's rules: no empty "
        "string or token array, at most 2048 inputs (or the deployment's max batch size), each within the "
        "model's context length (its tokenizer's max_length, special tokens included), and 300,000 tokens "
        "in all. Token ids go to the model as they are: send [CLS] ... [SEP] as the tokenizer would."
    )
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[int, Strict()] | None = Field(
        default=None,
        gt=0,
        description="The model's own size, or one of the Matryoshka sizes its manifest declares: the vector is "
        "cut to that many values and normalised again",
    )
    user: str | None = Field(default=None, description="Accepted, as OpenAI's clients send it, and ignored")

    @field_validator("input", mode="wrap")
    @classmethod
    def _one_form(cls, value: Any, union: ValidatorFunctionWrapHandler) -> Any:
        """A list's first item says which of the forms it is, and the first item of another kind is named.

        Left to the union, pydantic would try every form on every item, and report every item that fails
        each: a 6 MB list of nulls would be millions of errors, and even a valid list of ids takes a second.
        """
        if not isinstance(value, list) or not value:
            return union(value)
        first = value[0]
        if not _is_token_id(first) and len(value) > OPENAI_MAX_INPUTS:
            raise ValueError(f"input has {len(value)} items; OpenAI's limit is {OPENAI_MAX_INPUTS}")
        if isinstance(first, str):
            bad = next((i for i, item in enumerate(value) if not isinstance(item, str)), None)
            if bad is not None:
                raise ValueError(f"input[{bad}] is not a string, but input[0] is: {_FORMS}")
        elif _is_token_id(first):
            bad = next((i for i, item in enumerate(value) if not _is_token_id(item)), None)
            if bad is not None:
                raise ValueError(f"input[{bad}] is not a token id (an integer), but input[0] is: {_FORMS}")
        elif isinstance(first, list):
            for index, row in enumerate(value):
                if not isinstance(row, list):
                    raise ValueError(f"input[{index}] is not a token array, but input[0] is: {_FORMS}")
                bad = next((i for i, item in enumerate(row) if not _is_token_id(item)), None)
                if bad is not None:
                    raise ValueError(f"input[{index}][{bad}] is not a token id (an integer)")
        else:
            raise ValueError(f"input[0] is neither a string, a token id nor a token array: {_FORMS}")
        return value


_FORMS = "input is a string, a list of strings, a list of token ids or a list of token-id lists"


def _is_token_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class EmbeddingItem(Schema):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class Usage(Schema):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsResponse(Schema):
    object: Literal["list"] = "list"
    data: list[EmbeddingItem]
    model: str
    usage: Usage


class ModelCard(Schema):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(Schema):
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
