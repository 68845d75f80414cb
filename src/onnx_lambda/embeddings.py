"""Text or token ids to sentence vectors: the published tokenizer.json, then the model (pooling is inside the graph)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from tokenizers import Encoding, Tokenizer

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
        self.vocabulary_size = tokenizer.get_vocab_size()
        self._pad_id = int((tokenizer.padding or {}).get("pad_id", 0))
        declared = model.manifest.matryoshka_dimensions
        if any(size > self.dimensions for size in declared):
            raise ModelLoadError(
                f"model {model.name!r}: matryoshka_dimensions {declared} go past its {self.dimensions} dimensions"
            )
        self.matryoshka_dimensions = tuple(sorted(declared))

    @property
    def max_length(self) -> int:
        """The most tokens, [CLS]/[SEP] included, one input may have: the model's context length."""
        return self._max_length

    def tokenize(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Token tensors for ``texts``; a text over :attr:`max_length` tokens is truncated (sentence-transformers')."""
        return self._feeds(self._tokenizer.encode_batch(list(texts)))

    def _feeds(self, encodings: Sequence[Encoding]) -> dict[str, np.ndarray]:
        feeds = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        }
        if self._wants_type_ids:
            feeds["token_type_ids"] = np.array([e.type_ids for e in encodings], dtype=np.int64)
        return feeds

    def text_feeds(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Token tensors for ``texts``, refusing a text over :attr:`max_length` tokens as OpenAI does.

        OpenAI answers a too-long input with a 400, not a silently shortened vector. The tokenizer marks
        a text it truncated (``overflowing``); only then is it counted again, untruncated, for the message.
        """
        encodings = self._tokenizer.encode_batch(list(texts))
        for index, encoding in enumerate(encodings):
            if encoding.overflowing:
                raise self._too_long(index, len(self._untruncated.encode(texts[index]).ids))
        return self._feeds(encodings)

    def id_feeds(self, rows: Sequence[Sequence[int]]) -> dict[str, np.ndarray]:
        """Token tensors for token-id arrays, which OpenAI takes as the exact token sequence of each input.

        The ids are this model's tokenizer's and go in unchanged: no [CLS]/[SEP] is added, so the ids of
        ``tokenizer.encode(text)`` (which has them) embed exactly as ``text`` does. Each row is checked as
        the tokenizer's output would be: not empty, at most :attr:`max_length` ids, each in the vocabulary.
        A bad id is named by its position only: a caller's integer can be thousands of digits long.
        """
        if not rows:
            raise BadRequest("input is an empty list: send at least one token array", param="input")
        last = self.vocabulary_size - 1
        for index, row in enumerate(rows):
            if not row:
                raise BadRequest(f"input[{index}] is an empty token array", param="input")
            if len(row) > self._max_length:
                raise self._too_long(index, len(row))
            if min(row) < 0 or max(row) > last:
                position = next(i for i, token in enumerate(row) if not 0 <= token <= last)
                raise BadRequest(
                    f"input[{index}][{position}] is not a token id of model {self.model.name!r}: "
                    f"its tokenizer's ids are 0 to {last}",
                    param="input",
                )
        ids = np.full((len(rows), max(len(row) for row in rows)), self._pad_id, dtype=np.int64)
        mask = np.zeros_like(ids)
        for index, row in enumerate(rows):
            ids[index, : len(row)] = row
            mask[index, : len(row)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if self._wants_type_ids:
            feeds["token_type_ids"] = np.zeros_like(ids)  # one sequence: type 0 throughout, as the tokenizer sets
        return feeds

    def _too_long(self, index: int, tokens: int) -> BadRequest:
        return BadRequest(
            f"input[{index}] is {tokens} tokens; model {self.model.name!r} has a maximum context length of "
            f"{self._max_length} tokens: shorten it or split it",
            param="input",
            code="context_length_exceeded",
        )

    @cached_property
    def _untruncated(self) -> Tokenizer:
        """A copy of the tokenizer that counts every token: built only when a text is found too long."""
        tokenizer = Tokenizer.from_str(self._tokenizer.to_str())
        tokenizer.no_truncation()
        tokenizer.no_padding()
        return tokenizer

    def check_dimensions(self, dimensions: int) -> None:
        """OpenAI's ``dimensions``: the model's own size, or one of the manifest's Matryoshka sizes."""
        if dimensions == self.dimensions or dimensions in self.matryoshka_dimensions:
            return
        if not self.matryoshka_dimensions:
            raise BadRequest(
                f"model {self.model.name!r} does not support dimensions other than its own {self.dimensions}: "
                "its manifest declares no matryoshka_dimensions",
                param="dimensions",
            )
        sizes = sorted({*self.matryoshka_dimensions, self.dimensions})
        raise BadRequest(
            f"dimensions must be one of {sizes} for model {self.model.name!r}, or omitted", param="dimensions"
        )

    def shorten(self, vectors: np.ndarray, dimensions: int | None) -> np.ndarray:
        """The first ``dimensions`` values of each vector, L2-normalised again (OpenAI's ``dimensions``)."""
        if dimensions is None or dimensions >= vectors.shape[1]:
            return vectors
        head = vectors[:, :dimensions]
        norms = np.linalg.norm(head, axis=1, keepdims=True)
        shortened: np.ndarray = head / np.where(norms > 0, norms, 1).astype(head.dtype)
        return shortened

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
        """Vectors for ``texts``, each truncated to :attr:`max_length` tokens (the route refuses those instead)."""
        if not texts:
            raise BadRequest("input is empty: send a string or a non-empty list of strings")
        return self.run(self.tokenize(texts))

    def run(self, feeds: Mapping[str, np.ndarray]) -> Embeddings:
        vectors = self.model.run(feeds, (self.output,))[self.output]
        return Embeddings(vectors=vectors, prompt_tokens=int(feeds["attention_mask"].sum()))
