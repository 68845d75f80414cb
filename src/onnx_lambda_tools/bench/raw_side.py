"""The raw reference in a process of its own, timed in blocks on request.

A script a user writes runs in its own process, and so does a Lambda function. Holding the reference's
sessions in the handler's process made them share more than the machine: with spinning on, each
session's intra-op pool keeps a core busy for a while after its last run, and two pools in one process on
two cores made the ratios swing from run to run (1.27x, then 2.1x, for the same code). Here the reference
waits on a pipe while the handler runs, and the handler's process waits while the reference runs, so each
side has the cores to itself during its block, and :func:`~onnx_lambda_tools.bench.stats.interleave` still
alternates the blocks so that the machine's noise lands on both.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import traceback
from collections.abc import Callable, Sequence
from functools import partial
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from onnx_lambda.manifest import MODEL_FILE, TOKENIZER_FILE
from onnx_lambda_tools.bench import session_grid
from onnx_lambda_tools.bench.stats import Block, time_calls


class RawEmbedder:
    """What a minimal script does: tokenize with the published tokenizer.json, then ``session.run``."""

    def __init__(self, model_dir: Path, options: ort.SessionOptions, max_length: int) -> None:
        self.tokenizer = Tokenizer.from_file(str(model_dir / TOKENIZER_FILE))
        self.tokenizer.enable_truncation(max_length=max_length)
        self.tokenizer.enable_padding()
        self.session = ort.InferenceSession(str(model_dir / MODEL_FILE), options, providers=["CPUExecutionProvider"])
        self.type_ids = any(i.name == "token_type_ids" for i in self.session.get_inputs())

    def __call__(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64)}
        if self.type_ids:
            feeds["token_type_ids"] = np.array([e.type_ids for e in encodings], dtype=np.int64)
        result: np.ndarray = self.session.run(None, feeds)[0]
        return result


def serve(connection: Connection) -> None:
    """The reference process: set up named cases, run them on request, answer ``("ok", value)`` or an error."""
    cases: dict[str, Callable[[], Any]] = {}
    embedders: dict[tuple[str, str, int], RawEmbedder] = {}
    sessions: dict[tuple[str, str], ort.InferenceSession] = {}

    def embedder(model_dir: str, chosen: dict[str, Any], max_length: int) -> RawEmbedder:
        key = (model_dir, repr(sorted(chosen.items())), max_length)
        if key not in embedders:
            embedders[key] = RawEmbedder(Path(model_dir), session_grid.options_of(chosen), max_length)
        return embedders[key]

    def session(model_path: str, chosen: dict[str, Any]) -> ort.InferenceSession:
        key = (model_path, repr(sorted(chosen.items())))
        if key not in sessions:
            options = session_grid.options_of(chosen)
            sessions[key] = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
        return sessions[key]

    while True:
        try:
            command, *arguments = connection.recv()
        except EOFError:
            return
        try:
            if command == "stop":
                return
            if command == "grid":
                value: Any = session_grid.grid(Path(arguments[0]), float(arguments[1]))
            elif command == "embed":
                name, model_dir, chosen, max_length, texts = arguments
                cases[name] = partial(embedder(model_dir, chosen, max_length), list(texts))
                value = None
            elif command == "run":
                name, model_path, chosen, outputs, feeds = arguments
                cases[name] = partial(session(model_path, chosen).run, list(outputs), feeds)
                value = None
            elif command == "result":
                value = cases[arguments[0]]()
            elif command == "time":
                value = time_calls(cases[arguments[0]], int(arguments[1]))
            else:
                raise ValueError(f"unknown command {command!r}")
        except Exception:  # reported to the bench, which raises it there
            connection.send(("error", traceback.format_exc()))
        else:
            connection.send(("ok", value))


class RawSide:
    """The bench's handle on the reference process: named cases, their answers, and blocks of timed calls."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: nothing of the handler's process
        self._connection, child = context.Pipe()
        self._process = context.Process(target=serve, args=(child,), name="raw-reference", daemon=True)
        self._process.start()
        child.close()

    def _ask(self, *message: Any) -> Any:
        self._connection.send(message)
        status, value = self._connection.recv()
        if status != "ok":
            raise RuntimeError(f"the raw reference failed:\n{value}")
        return value

    def grid(self, model_dir: Path, seconds: float) -> dict[str, Any]:
        """:func:`session_grid.grid`, in the reference's process (its sessions never live beside the handler)."""
        result: dict[str, Any] = self._ask("grid", str(model_dir), seconds)
        return result

    def embed(self, name: str, model_dir: Path, chosen: dict[str, Any], max_length: int, texts: Sequence[str]) -> None:
        """A case that embeds ``texts`` as a minimal script does, with the session options ``chosen``."""
        self._ask("embed", name, str(model_dir), chosen, max_length, list(texts))

    def run(
        self, name: str, model_path: Path, chosen: dict[str, Any], outputs: Sequence[str], feeds: dict[str, Any]
    ) -> None:
        """A case that is one ``session.run`` of ``feeds``."""
        self._ask("run", name, str(model_path), chosen, list(outputs), feeds)

    def result(self, name: str) -> Any:
        """What one call of the case returns, to check that both sides do the same work."""
        return self._ask("result", name)

    def block(self, name: str) -> Block:
        """The case as :func:`~onnx_lambda_tools.bench.stats.interleave` takes it: n calls, timed there."""
        return partial(self._ask, "time", name)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._connection.send(("stop",))
        self._process.join(timeout=30)
        if self._process.is_alive():
            self._process.kill()
        self._connection.close()

    def __enter__(self) -> RawSide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
