"""Text to sentence vectors: the published tokenizer.json, then the model (pooling is inside the graph)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from tokenizers import Tokenizer

from onnx_lambda.errors import BadRequest, ModelLoadError
from onnx_lambda.manifest import TokenizerSettings
from onnx_lambda.model import OnnxModel

_TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass(frozen=True, slots=True)
class Embeddings:
    vectors: np.ndarray  # float32 [n, dim], L2-normalised by the graph
    prompt_tokens: int  # real tokens, [CLS]/[SEP] included, padding excluded


class Embedder:
    """Tokenizes a batch (truncate, pad to the longest item) and runs the model on it."""

    def __init__(self, model: OnnxModel, tokenizer_json: bytes, settings: TokenizerSettings) -> None:
        try:
            tokenizer = Tokenizer.from_str(tokenizer_json.decode("utf-8"))
        except Exception as exc:  # tokenizers raises a bare Exception on a bad file
            raise ModelLoadError(f"model {model.name!r}: tokenizer.json does not load: {exc}") from exc
        # The shipped file pads every batch to a fixed 128; the manifest's settings win.
        tokenizer.enable_truncation(max_length=settings.max_length)
        tokenizer.enable_padding()
        self._tokenizer = tokenizer
        self._max_length = settings.max_length
        self.model = model
        names = {spec.name for spec in model.signature.inputs}
        unknown = names.difference(_TOKEN_INPUTS)
        if "input_ids" not in names or unknown:
            raise ModelLoadError(
                f"model {model.name!r} has inputs {sorted(names)}; an embedding model takes {list(_TOKEN_INPUTS)}"
            )
        self._wants_type_ids = "token_type_ids" in names
        floats = [o for o in model.signature.outputs if o.datatype == "FP32" and len(o.shape) == 2]
        if len(floats) != 1:
            raise ModelLoadError(f"model {model.name!r} has no single [batch, dim] FP32 output to use as embedding")
        self.output = floats[0].name
        self.dimensions = floats[0].shape[1]

    def tokenize(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        encodings = self._tokenizer.encode_batch(list(texts))
        feeds = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        }
        if self._wants_type_ids:
            feeds["token_type_ids"] = np.array([e.type_ids for e in encodings], dtype=np.int64)
        return feeds

    def check_token_inputs(self, feeds: Mapping[str, np.ndarray]) -> None:
        """Token tensors sent to ``infer`` directly must be what the tokenizer could produce.

        onnxruntime fails on an id past the vocabulary or a sequence it has no positions for, and that
        failure would be a 500 for what is bad input.
        """
        ids = feeds.get("input_ids")
        if ids is None or ids.ndim != 2:
            return
        if not 1 <= ids.shape[1] <= self._max_length:
            raise BadRequest(
                f"input 'input_ids' has {ids.shape[1]} tokens per row; model {self.model.name!r} takes "
                f"1 to {self._max_length} (its tokenizer's max_length)"
            )
        for name in _TOKEN_INPUTS:
            other = feeds.get(name)
            if other is not None and other.shape != ids.shape:
                raise BadRequest(
                    f"input {name!r} has shape {list(other.shape)}; it must match input_ids' {list(ids.shape)}"
                )
        for name in ("attention_mask", "token_type_ids"):
            other = feeds.get(name)
            if other is not None and other.size and (int(other.min()) < 0 or int(other.max()) > 1):
                raise BadRequest(f"input {name!r} must hold only 0 and 1")
        vocabulary = self._tokenizer.get_vocab_size()
        if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= vocabulary):
            raise BadRequest(
                f"input 'input_ids' holds token ids outside 0..{vocabulary - 1}, the vocabulary of "
                f"model {self.model.name!r}"
            )

    def embed(self, texts: Sequence[str]) -> Embeddings:
        if not texts:
            raise BadRequest("input is empty: send a string or a non-empty list of strings")
        feeds = self.tokenize(texts)
        vectors = self.model.run(feeds, (self.output,))[self.output]
        return Embeddings(vectors=vectors, prompt_tokens=int(feeds["attention_mask"].sum()))
