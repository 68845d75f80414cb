"""``python -m onnx_lambda_tools.export.int8_study``: every int8 recipe against the bars the shipped one must hold.

For each recipe in ``RECIPES`` it quantizes the fp32 export in ``--models`` and measures, in one process:

* parity: cosine to the fp32 model over the parity corpus, in the service's batches of 32 (mean and min);
* batch invariance: the min cosine between each corpus text embedded alone and the same text in its batch of
  32, and in a batch of two with its neighbour (padded to the longer);
* speed: raw ``session.run``, one sentence (p50) and a batch of 32 (sentences/s), with the service's
  ``session_options`` at 2 intra-op threads and at 1, every recipe in the same interleaved rounds (order
  reversed every round). Ratios to the dynamic recipe are what count; absolute times move with the load.

It prints a Markdown table (docs/performance.md keeps one). Export-time dependencies only; a few minutes.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from tokenizers import Tokenizer

from onnx_lambda.manifest import MODEL_FILE, TOKENIZER_FILE
from onnx_lambda.model import session_options
from onnx_lambda_tools.export import MINILM_FP32, int8
from onnx_lambda_tools.export.minilm import OUTPUT_NAME, calibration_batches, tokenize

FloatArray = npt.NDArray[np.float32]

#: What was tried, in the order of the table. The shipped recipe is ``int8.SHIPPED``.
RECIPES: tuple[int8.Recipe, ...] = (
    int8.DYNAMIC,
    int8.Recipe("static, MinMax, QDQ, MatMul outputs quantized too", "static", "MinMax", quantize_outputs=True),
    int8.Recipe("static, Percentile, QOperator (QLinearMatMul)", "static", format="QOperator", quantize_outputs=True),
    int8.Recipe("static, MinMax, QDQ, bias folded", "static", "MinMax"),
    int8.Recipe("static, Entropy, QDQ, bias folded", "static", "Entropy"),
    int8.Recipe("static, Percentile, QDQ (as quantize_static writes it)", "static", fold=False),
    int8.SHIPPED,
    int8.Recipe("static, Percentile, QDQ, bias folded, s8s8", "static", activation_type="QInt8"),
    int8.Recipe("shipped + layer 0's FFN output MatMul in fp32", "static", fp32_matmuls=("layer.0/output/dense",)),
    int8.Recipe("shipped + every FFN output MatMul in fp32", "static", fp32_matmuls=("/output/dense/",)),
)
#: The one-sentence case, as the bench's.
SENTENCE = "The quick brown fox jumps over the lazy dog."
BATCH = 32


@dataclass(frozen=True)
class Quality:
    parity_mean: float
    parity_min: float
    invariance_min: float


@dataclass(frozen=True)
class Speed:
    """Wall clock, and CPU time of the process (all its threads), which other jobs on the machine move less."""

    p50_ms: float
    batch_per_s: float
    cpu_p50_ms: float
    batch_per_cpu_s: float


def load_corpus(path: Path) -> list[str]:
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


def open_session(model: Path, threads: int) -> ort.InferenceSession:
    return ort.InferenceSession(
        str(model), sess_options=session_options(threads, "all"), providers=["CPUExecutionProvider"]
    )


def embed(session: ort.InferenceSession, tokenizer: Tokenizer, batches: Sequence[Sequence[str]]) -> FloatArray:
    return np.concatenate([session.run([OUTPUT_NAME], tokenize(tokenizer, batch))[0] for batch in batches])


def cosines(a: FloatArray, b: FloatArray) -> FloatArray:
    result: FloatArray = (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return result


def quality(model: Path, tokenizer: Tokenizer, corpus: list[str], reference: FloatArray) -> Quality:
    session = open_session(model, 2)
    batched = embed(session, tokenizer, [corpus[start : start + BATCH] for start in range(0, len(corpus), BATCH)])
    alone = embed(session, tokenizer, [[text] for text in corpus])
    pairs = [[text, corpus[(index + 1) % len(corpus)]] for index, text in enumerate(corpus)]
    first_of_pair = embed(session, tokenizer, pairs)[::2]
    parity = cosines(batched, reference)
    invariance = min(cosines(alone, batched).min(), cosines(alone, first_of_pair).min())
    return Quality(float(parity.mean()), float(parity.min()), float(invariance))


def speeds(models: Sequence[Path], tokenizer: Tokenizer, corpus: list[str], threads: int, rounds: int) -> list[Speed]:
    """Every model in the same rounds, order reversed each round, so load changes hit all of them alike."""
    one = tokenize(tokenizer, [SENTENCE])
    batch = tokenize(tokenizer, [text for text in corpus if 20 <= len(text) <= 120][:BATCH])
    sessions = [open_session(model, threads) for model in models]
    for session in sessions:  # warm-up
        for _ in range(10):
            session.run([OUTPUT_NAME], one)
            session.run([OUTPUT_NAME], batch)
    single: list[list[tuple[float, float]]] = [[] for _ in models]
    batches: list[list[tuple[float, float]]] = [[] for _ in models]
    for number in range(rounds):
        order = range(len(models)) if number % 2 == 0 else reversed(range(len(models)))
        for index in order:
            single[index] += [_timed(sessions[index], one) for _ in range(40)]
            batches[index] += [_timed(sessions[index], batch) for _ in range(2)]
    return [
        Speed(
            p50_ms=float(np.median([wall for wall, _ in times])) * 1e3,
            batch_per_s=BATCH * len(runs) / sum(wall for wall, _ in runs),
            cpu_p50_ms=float(np.median([cpu for _, cpu in times])) * 1e3,
            batch_per_cpu_s=BATCH * len(runs) / sum(cpu for _, cpu in runs),
        )
        for times, runs in zip(single, batches, strict=True)
    ]


def _timed(session: ort.InferenceSession, feeds: dict[str, npt.NDArray[np.int64]]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    session.run([OUTPUT_NAME], feeds)
    return time.perf_counter() - wall, time.process_time() - cpu


def table(
    recipes: Sequence[int8.Recipe],
    sizes: Sequence[int],
    qualities: Sequence[Quality],
    by_threads: dict[int, list[Speed]],
) -> str:
    """Quality and wall-clock speed per recipe, then the same runs in CPU time; speeds as ratios to dynamic."""
    threads = sorted(by_threads, reverse=True)
    base = recipes.index(int8.DYNAMIC)
    header = ["recipe", "MB", "parity mean", "parity min", "alone vs batched, min cos"]
    cpu_header = ["recipe"]
    for count in threads:
        header += [f"{count} thr: 1 sentence p50 ms", f"{count} thr: batch of 32, /s"]
        cpu_header += [f"{count} thr: 1 sentence, CPU ms p50", f"{count} thr: batch of 32, per CPU s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    cpu_lines = ["| " + " | ".join(cpu_header) + " |", "|" + "---|" * len(cpu_header)]
    for index, recipe in enumerate(recipes):
        name = f"**{recipe.name}** (shipped)" if recipe == int8.SHIPPED else recipe.name
        q = qualities[index]
        row = [name, f"{sizes[index] / 1e6:.1f}", f"{q.parity_mean:.4f}", f"{q.parity_min:.4f}"]
        row.append(f"{q.invariance_min:.6f}")
        cpu_row = [name]
        for count in threads:
            speed, reference = by_threads[count][index], by_threads[count][base]
            row.append(f"{speed.p50_ms:.3f} ({speed.p50_ms / reference.p50_ms:.2f}x)")
            row.append(f"{speed.batch_per_s:.0f} ({speed.batch_per_s / reference.batch_per_s:.2f}x)")
            cpu_row.append(f"{speed.cpu_p50_ms:.3f} ({speed.cpu_p50_ms / reference.cpu_p50_ms:.2f}x)")
            cpu_row.append(f"{speed.batch_per_cpu_s:.0f} ({speed.batch_per_cpu_s / reference.batch_per_cpu_s:.2f}x)")
        lines.append("| " + " | ".join(row) + " |")
        cpu_lines.append("| " + " | ".join(cpu_row) + " |")
    return "\n".join([*lines, "", "CPU time of the same runs:", "", *cpu_lines])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m onnx_lambda_tools.export.int8_study", description=__doc__)
    parser.add_argument("--models", type=Path, default=Path("models"), help="what `make model` wrote (default: models)")
    parser.add_argument(
        "--corpus", type=Path, default=Path("tests/models/corpus.jsonl"), help="parity text (JSON lines)"
    )
    parser.add_argument("--rounds", type=int, default=30, help="interleaved speed rounds per thread count")
    parser.add_argument(
        "--recipes", help="comma-separated positions in RECIPES to run (default: all; dynamic is always run)"
    )
    args = parser.parse_args(argv)
    chosen = [RECIPES[int(i)] for i in args.recipes.split(",")] if args.recipes else list(RECIPES)
    recipes = [int8.DYNAMIC, *(recipe for recipe in chosen if recipe != int8.DYNAMIC)]

    fp32_dir: Path = args.models / MINILM_FP32
    tokenizer = Tokenizer.from_file(str(fp32_dir / TOKENIZER_FILE))
    corpus = load_corpus(args.corpus)
    in_batches = [corpus[start : start + BATCH] for start in range(0, len(corpus), BATCH)]
    reference = embed(open_session(fp32_dir / MODEL_FILE, 2), tokenizer, in_batches)
    calibration = calibration_batches(tokenizer)
    with tempfile.TemporaryDirectory(prefix="int8-study-") as scratch:
        models = [Path(scratch) / f"recipe-{index}.onnx" for index in range(len(recipes))]
        qualities: list[Quality] = []
        for recipe, model in zip(recipes, models, strict=True):
            int8.quantize(fp32_dir / MODEL_FILE, model, calibration, recipe)
            qualities.append(quality(model, tokenizer, corpus, reference))
            print(f"{recipe.name}: {qualities[-1]}", file=sys.stderr)
        sizes = [model.stat().st_size for model in models]
        by_threads = {threads: speeds(models, tokenizer, corpus, threads, args.rounds) for threads in (2, 1)}
    print(f"onnxruntime {ort.__version__}, {len(corpus)} parity texts, {args.rounds} rounds")
    print(table(recipes, sizes, qualities, by_threads))
    return 0


if __name__ == "__main__":
    sys.exit(main())
