"""What every path is measured on: the same texts, rows, request bodies and API Gateway events.

The texts are fixed here rather than drawn at random so that two runs (and the raw reference and the
service within a run) see exactly the same tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
from tokenizers import Tokenizer

from onnx_lambda import protocol
from onnx_lambda_tools.local.events import build_event

SHORT_SENTENCE = "Serverless inference on AWS Lambda"
LONG_TOKENS = 128
BATCH_SIZE = 32
TABULAR_ROWS = (1, 1000)

#: Claims as API Gateway's JWT authorizer hands them to the function for a machine client's token.
CLAIMS = {
    "sub": "bench0client0id",
    "client_id": "bench0client0id",
    "token_use": "access",  # nosec B105  # a claim value, not a password
    "scope": "inference/invoke",
    "iss": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_BENCH",
    "exp": "4102444800",
    "iat": "1700000000",
}
SCOPES = ("inference/invoke",)

_PARAGRAPH = (
    "An inference service on AWS Lambda pays for every millisecond it runs, so whatever it does around the "
    "model is money spent on nothing the caller asked for. The request arrives through API Gateway, which has "
    "already checked the caller's token; the function decodes the body, tokenizes the text, runs the ONNX "
    "Runtime session and writes the vectors back as JSON. Each of those steps has a cost that can be measured "
    "against the session on its own, and the session is the physical limit: a service cannot answer faster "
    "than its model computes. Cold starts add the time to start Python, import the libraries, fetch the model "
    "from S3, check its hash and build the session. Memory is billed by the size chosen for the function, and "
    "that size also buys the CPU share the model runs on. A small model such as MiniLM keeps all of these "
    "numbers low, which is why the overhead around it matters as much as it does."
)

#: 32 sentences of different lengths, so that padding to the longest item is exercised as in real traffic.
BATCH_TEXTS: tuple[str, ...] = (
    "A man is riding a horse.",
    "The quick brown fox jumps over the lazy dog.",
    "Serverless inference trades idle capacity for per-request billing.",
    "How do I rotate the signing keys of a Cognito user pool?",
    "The model is published under an immutable, content-addressed prefix.",
    "Cold starts are rare when traffic is steady.",
    "A woman is slicing an onion in the kitchen.",
    "Photosynthesis converts light energy into chemical energy.",
    "kubectl get pods -n production --selector app=api",
    "The weather in Lisbon is mild in the winter.",
    "Embeddings map sentences with similar meaning to nearby vectors.",
    "Two dogs are playing in the snow.",
    "The invoice total does not match the purchase order.",
    "Please reset my password; I no longer have access to my email.",
    "Quantized weights make the model four times smaller.",
    "The concert was cancelled because of the storm.",
    "A child is reading a book under a tree.",
    "What is the capital of Australia?",
    "Latency percentiles say more about user experience than averages.",
    "The train to Porto leaves at seven in the morning.",
    "Our API returns errors as JSON objects with a message.",
    "The cat sleeps on the warm windowsill all afternoon.",
    "Memory size on Lambda also determines the share of CPU.",
    "He plays the guitar in a small jazz band on Fridays.",
    "Tokenizers split words into sub-word pieces from a fixed vocabulary.",
    "The museum opens at ten and closes at six.",
    "Store the API key in a secret, never in the repository.",
    "A group of people are hiking up a steep mountain trail.",
    "The function's timeout is shorter than the gateway's.",
    "Fresh bread smells wonderful early in the morning.",
    "Throughput rises with batch size until the cores are saturated.",
    "The pre-traffic hook replays the golden request before any traffic shifts.",
)


def long_text(tokenizer: Tokenizer, tokens: int = LONG_TOKENS) -> str:
    """A text that the tokenizer turns into exactly ``tokens`` tokens, [CLS] and [SEP] included."""
    plain = Tokenizer.from_str(tokenizer.to_str())
    plain.no_truncation()
    plain.no_padding()
    text = _PARAGRAPH
    while len(plain.encode(text).ids) < tokens:
        text = f"{text} {_PARAGRAPH}"
    encoding = plain.encode(text)
    # Word tokens are everything between [CLS] and [SEP]; keep tokens - 2 of them and cut the text there.
    words = [
        offset for offset, special in zip(encoding.offsets, encoding.special_tokens_mask, strict=True) if not special
    ]
    cut = words[tokens - 3][1]
    candidate = text[:cut]
    count = len(plain.encode(candidate).ids)
    if count != tokens:
        raise ValueError(f"the long text tokenizes to {count} tokens, not {tokens}")
    return candidate


def embeddings_body(model: str, texts: str | Sequence[str]) -> bytes:
    return orjson.dumps({"model": model, "input": texts if isinstance(texts, str) else list(texts)})


def tabular_rows(golden_request: dict[str, Any], rows: int) -> np.ndarray:
    """``rows`` rows of real features: the manifest's golden rows, repeated."""
    tensor = golden_request["inputs"][0]
    golden = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
    repeats = -(-rows // golden.shape[0])
    return np.ascontiguousarray(np.tile(golden, (repeats, 1))[:rows])


def infer_body(
    input_name: str, rows: np.ndarray, outputs: Sequence[str], *, binary: bool = False
) -> tuple[bytes, dict[str, str]]:
    """An Open Inference Protocol request: all JSON, or binary both ways as tritonclient sends by default."""
    return protocol.encode_infer_request(
        [(input_name, rows)], binary_inputs=binary, outputs=list(outputs), binary_outputs=binary
    )


def lambda_event(
    method: str, path: str, route_key: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """An API Gateway HTTP API v2 event as the authorizer-protected route receives it."""
    request_headers = {"content-type": "application/json", **(headers or {})}
    return build_event(
        method=method,
        path=path,
        route_key=route_key,
        headers=list(request_headers.items()),
        body=body,
        claims=CLAIMS,
        scopes=SCOPES,
        request_id="benchrequest0001",
        epoch_ms=1_800_000_000_000,
    )


def embeddings_event(model: str, texts: str | Sequence[str]) -> dict[str, Any]:
    return lambda_event("POST", "/v1/embeddings", "POST /v1/embeddings", embeddings_body(model, texts))


def infer_event(model: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    return lambda_event(
        "POST",
        f"/v2/models/{model}/infer",
        "POST /v2/models/{model_name}/infer",
        body,
        {k.lower(): v for k, v in headers.items()},
    )
