"""The load test's request mix: what a day of real traffic looks like, and what each request must get back.

Kept apart from the locustfile (and free of locust imports, which monkey-patch the process) so the
tests can check every request it builds against the real service. Each builder returns a
:class:`PlannedRequest` whose ``name`` is the row in locust's statistics and the key in ``slo.json``.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

EMBEDDER: Final = os.environ.get("ONNX_LAMBDA_EMBEDDING_MODEL", "all-minilm-l6-v2")
TABULAR: Final = os.environ.get("ONNX_LAMBDA_TABULAR_MODEL", "breast-cancer-classifier")
JSON_HEADERS: Final = {"content-type": "application/json"}
#: Every invalid request's statistics row starts with this; ``check_slo`` groups them by it.
INVALID_PREFIX: Final = "invalid: "

#: Two rows of the Wisconsin breast-cancer data (malignant, benign): 30 features each, in dataset order.
_TABULAR_ROWS: Final = (
    (17.99, 10.38, 122.8, 1001.0, 0.1184, 0.2776, 0.3001, 0.1471, 0.2419, 0.07871,
     1.095, 0.9053, 8.589, 153.4, 0.006399, 0.04904, 0.05373, 0.01587, 0.03003, 0.006193,
     25.38, 17.33, 184.6, 2019.0, 0.1622, 0.6656, 0.7119, 0.2654, 0.4601, 0.1189),
    (13.54, 14.36, 87.46, 566.3, 0.09779, 0.08129, 0.06664, 0.04781, 0.1885, 0.05766,
     0.2699, 0.7886, 2.058, 23.56, 0.008462, 0.0146, 0.02387, 0.01315, 0.0198, 0.0023,
     15.11, 19.26, 99.7, 711.2, 0.144, 0.1773, 0.239, 0.1288, 0.2977, 0.07259),
)  # fmt: skip
_FEATURES: Final = len(_TABULAR_ROWS[0])

#: What callers embed: product questions, support messages, search queries, a few longer passages.
_SENTENCES: Final = (
    "How do I reset my password?",
    "The delivery arrived two days late and the box was damaged.",
    "Serverless inference on AWS Lambda",
    "Which plan includes single sign-on for the whole team?",
    "Refund request for order 18374",
    "best noise cancelling headphones under 200 dollars",
    "The app crashes when I rotate the screen on my tablet.",
    "Can I export my data as CSV?",
    "quarterly revenue grew 12 percent year over year",
    "Wie kann ich meine Rechnung herunterladen?",
    "¿Dónde está mi pedido?",
    "这个产品支持中文吗？",  # noqa: RUF001 - real CJK punctuation
    "Great service, thanks 🙏",
    "A sentence embedding maps text to a point in a vector space where similar meanings lie close together.",
    "Cancel my subscription at the end of the billing period, please.",
    "error 502 bad gateway after deploying the new version",
)
_PASSAGE: Final = (
    "Our service answers questions about orders, invoices and shipping. Customers write in many languages, "
    "often with typos, product codes and order numbers, and they expect an answer within seconds. The "
    "embeddings of these messages feed a nearest-neighbour search over past tickets, so an agent sees the "
    "three most similar cases and how they were resolved before replying."
)
#: BERT's [CLS] and [SEP] token ids; token ids in between are drawn from the ordinary vocabulary range.
_CLS, _SEP, _VOCAB_LOW, _VOCAB_HIGH = 101, 102, 1996, 29611


@dataclass(frozen=True)
class PlannedRequest:
    """One HTTP request of the mix and what its response must be."""

    name: str
    method: str
    path: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    expected_status: int = 200
    #: False for the one invalid case that leaves the token off on purpose.
    authenticated: bool = True
    #: Checks a 2xx body; returns what is wrong with it, or None.
    check: Callable[[Any], str | None] | None = None

    def problem(self, status: int, body: bytes) -> str | None:
        """Why this response fails the request's expectation, or None when it meets it."""
        if status != self.expected_status:
            return f"expected HTTP {self.expected_status}, got {status}: {body[:200]!r}"
        if self.check is None:
            return None
        try:
            document = json.loads(body)
        except ValueError:
            return f"the body is not JSON: {body[:200]!r}"
        return self.check(document)


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _texts(rng: random.Random, count: int) -> list[str]:
    texts = [rng.choice(_SENTENCES) for _ in range(count)]
    if count > 1 and rng.random() < 0.1:
        texts[rng.randrange(count)] = _PASSAGE  # now and then a long passage pads the batch to ~80 tokens
    return texts


def _embeddings_check(count: int, base64: bool) -> Callable[[Any], str | None]:
    def check(document: Any) -> str | None:
        data = document.get("data") if isinstance(document, dict) else None
        if not isinstance(data, list) or len(data) != count:
            return f"expected {count} embeddings"
        vector = data[0].get("embedding") if isinstance(data[0], dict) else None
        if base64 and not isinstance(vector, str):
            return "expected a base64 string"
        if not base64 and (not isinstance(vector, list) or len(vector) != 384):
            return "expected a 384-float vector"
        return None

    return check


def _outputs_check(names: set[str], rows: int) -> Callable[[Any], str | None]:
    def check(document: Any) -> str | None:
        outputs = document.get("outputs") if isinstance(document, dict) else None
        if not isinstance(outputs, list) or {o.get("name") for o in outputs} != names:
            return f"expected outputs {sorted(names)}"
        if any(o.get("shape", [None])[0] != rows for o in outputs):
            return f"expected {rows} rows in every output"
        return None

    return check


# --- the valid requests -------------------------------------------------------------------------------


def embed_one(rng: random.Random) -> PlannedRequest:
    """OpenAI-style embeddings of one text: the most common call (search queries, chat messages)."""
    body = {"model": EMBEDDER, "input": _texts(rng, 1)[0]}
    return PlannedRequest(
        "POST /v1/embeddings (1 text)",
        "POST",
        "/v1/embeddings",
        _json(body),
        JSON_HEADERS,
        check=_embeddings_check(1, base64=False),
    )


def embed_batch(rng: random.Random) -> PlannedRequest:
    """A batch of 2 to 16 texts, as an indexing job sends them."""
    count = rng.randint(2, 16)
    body = {"model": EMBEDDER, "input": _texts(rng, count)}
    return PlannedRequest(
        "POST /v1/embeddings (batch 2-16)",
        "POST",
        "/v1/embeddings",
        _json(body),
        JSON_HEADERS,
        check=_embeddings_check(count, base64=False),
    )


def embed_base64(rng: random.Random) -> PlannedRequest:
    """The official openai client's default wire format: base64-encoded float32."""
    count = rng.randint(1, 4)
    body = {"model": EMBEDDER, "input": _texts(rng, count), "encoding_format": "base64"}
    return PlannedRequest(
        "POST /v1/embeddings (base64)",
        "POST",
        "/v1/embeddings",
        _json(body),
        JSON_HEADERS,
        check=_embeddings_check(count, base64=True),
    )


def infer_tabular(rng: random.Random) -> PlannedRequest:
    """Open Inference Protocol on the tabular classifier: 1 to 16 rows of slightly varied real patients."""
    rows = rng.randint(1, 16)
    data = [[round(value * rng.uniform(0.9, 1.1), 6) for value in rng.choice(_TABULAR_ROWS)] for _ in range(rows)]
    body = {"id": f"load-{rng.getrandbits(32):08x}", "inputs": [_fp32("features", data, [rows, _FEATURES])]}
    return PlannedRequest(
        f"POST /v2/models/{TABULAR}/infer",
        "POST",
        f"/v2/models/{TABULAR}/infer",
        _json(body),
        JSON_HEADERS,
        check=_outputs_check({"label", "probabilities"}, rows),
    )


def infer_embedder(rng: random.Random) -> PlannedRequest:
    """Open Inference Protocol on MiniLM with token ids, as a client that tokenizes for itself sends them."""
    rows, length = rng.randint(1, 4), rng.randint(8, 64)
    ids = [[_CLS, *(rng.randint(_VOCAB_LOW, _VOCAB_HIGH) for _ in range(length - 2)), _SEP] for _ in range(rows)]
    shape = [rows, length]
    body = {
        "inputs": [
            _int64("input_ids", ids, shape),
            _int64("attention_mask", [[1] * length] * rows, shape),
            _int64("token_type_ids", [[0] * length] * rows, shape),
        ]
    }
    return PlannedRequest(
        f"POST /v2/models/{EMBEDDER}/infer",
        "POST",
        f"/v2/models/{EMBEDDER}/infer",
        _json(body),
        JSON_HEADERS,
        check=_outputs_check({"sentence_embedding"}, rows),
    )


def model_metadata(rng: random.Random) -> PlannedRequest:
    """Clients read a model's signature before they build tensors (tritonclient, the kserve SDK)."""
    model = rng.choice((EMBEDDER, TABULAR))
    return PlannedRequest("GET /v2/models/{name}", "GET", f"/v2/models/{model}", check=_metadata_check(model))


def _metadata_check(model: str) -> Callable[[Any], str | None]:
    def check(document: Any) -> str | None:
        if not isinstance(document, dict) or document.get("name") != model or not document.get("inputs"):
            return f"expected the metadata of {model}"
        return None

    return check


def _fp32(name: str, data: list[list[float]], shape: list[int]) -> dict[str, Any]:
    return {"name": name, "datatype": "FP32", "shape": shape, "data": data}


def _int64(name: str, data: list[list[int]], shape: list[int]) -> dict[str, Any]:
    return {"name": name, "datatype": "INT64", "shape": shape, "data": data}


# --- the invalid requests: each must get exactly its 4xx --------------------------------------------------


def _invalid(
    case: str, status: int, path: str, body: bytes | None, headers: dict[str, str] | None = None, **kwargs: Any
) -> PlannedRequest:
    return PlannedRequest(
        f"{INVALID_PREFIX}{case} ({status})",
        "POST",
        path,
        body,
        JSON_HEADERS if headers is None else headers,
        expected_status=status,
        **kwargs,
    )


_ROW: Final = list(_TABULAR_ROWS[0])
_INFER: Final = f"/v2/models/{TABULAR}/infer"

#: The mistakes real callers make; the service must answer each with exactly its 4xx, never a 5xx.
INVALID_CASES: Final[tuple[PlannedRequest, ...]] = (
    _invalid("unknown model", 404, "/v2/models/no-such-model/infer", _json({"inputs": []})),
    _invalid("shape mismatch", 400, _INFER, _json({"inputs": [_fp32("features", [_ROW], [1, 29])]})),
    _invalid(
        "wrong datatype", 400, _INFER, _json({"inputs": [{**_fp32("features", [_ROW], [1, 30]), "datatype": "INT32"}]})
    ),
    _invalid("malformed JSON", 400, "/v1/embeddings", b'{"model": "' + EMBEDDER.encode() + b'", "input": '),
    _invalid("empty input", 400, "/v1/embeddings", _json({"model": EMBEDDER, "input": []})),
    _invalid("batch over the limit", 413, "/v1/embeddings", _json({"model": EMBEDDER, "input": ["x"] * 65})),
    _invalid("wrong content type", 415, "/v1/embeddings", b"input=hello", {"content-type": "text/plain"}),
    _invalid("no token", 401, "/v1/embeddings", _json({"model": EMBEDDER, "input": "hi"}), authenticated=False),
)


def invalid(rng: random.Random) -> PlannedRequest:
    """One of :data:`INVALID_CASES`, at random."""
    return rng.choice(INVALID_CASES)


Builder = Callable[[random.Random], PlannedRequest]

#: The mix, by weight (they sum to 100, so each is a percentage of requests).
MIX: Final[dict[Builder, int]] = {
    embed_one: 42,
    embed_batch: 15,
    embed_base64: 5,
    infer_tabular: 20,
    infer_embedder: 10,
    model_metadata: 5,
    invalid: 3,
}
